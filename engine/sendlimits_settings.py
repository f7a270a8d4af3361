"""Outbound sending limits per account: the [send_limits] section of mailctl.toml and the
per-account overrides an account's entry in its domain file may hold.

    [send_limits]                         # mailctl.toml: every account
    messages_per_hour = 100

    [accounts.newsletter]                 # domains/example.com.toml: this account only
    send_messages_per_day = 5000          # 0 = no limit for it

The defaults are on and generous: a person never meets them, a stolen password sending
spam is stopped within the hour (and blocked for the day) before the server's address
lands on a block list. engine/sendcounts.py counts, engine/accept/sendlimits.py refuses.
"""
from __future__ import annotations

from dataclasses import dataclass

from .settingkeys import Key, in_range

_MAX = 10_000_000

KEYS = {
    "enabled": Key(True, bool, "limit what each account sends to external recipients (SMTP AUTH on 587/465, and "
                   "sendmail(1) of a local user whose login is an account): past a limit 451 4.7.1; mail to "
                   "local recipients never counts"),
    "messages_per_hour": Key(100, int, "messages with external recipients an account may send in any 60 minutes "
                             "(0 = no limit)", in_range(0, _MAX)),
    "messages_per_day": Key(500, int, "... in any 24 hours; a message past it blocks the account's external sending "
                            "(0 = no limit)", in_range(0, _MAX)),
    "recipients_per_hour": Key(200, int, "distinct external recipients an account may send to in any 60 minutes "
                               "(0 = no limit)", in_range(0, _MAX)),
    "recipients_per_day": Key(1000, int, "... in any 24 hours; a message past it blocks the account's external sending "
                              "(0 = no limit)", in_range(0, _MAX)),
    "unblock_after_hours": Key(24, (int, float), "a blocked account may send again this long after it was blocked "
                               "(0 = only 'mailctl account unblock' lifts a block)", in_range(0, 24 * 365)),
}

# per-account overrides: the account key -> the [send_limits] key it replaces
ACCOUNT_OVERRIDES = {f"send_{name}": name for name in
                     ("messages_per_hour", "messages_per_day", "recipients_per_hour", "recipients_per_day")}


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _MAX


# for engine/directory.py's ACCOUNT_KEYS: key -> (check, expectation)
ACCOUNT_KEYS = {key: (_whole, f"a whole number from 0 (no limit) to {_MAX}") for key in ACCOUNT_OVERRIDES}


@dataclass(frozen=True)
class Limits:
    """The limits one account sends under (0: that one is off)."""
    messages_per_hour: int = 0
    messages_per_day: int = 0
    recipients_per_hour: int = 0
    recipients_per_day: int = 0

    @property
    def any(self) -> bool:
        return bool(self.messages_per_hour or self.messages_per_day or self.recipients_per_hour
                    or self.recipients_per_day)

    @property
    def counts_recipients(self) -> bool:
        return bool(self.recipients_per_hour or self.recipients_per_day)


def limits_for(settings, account) -> Limits:
    """The limits of an account (a directory Account, or None: the defaults): its own
    overrides over [send_limits]; all off when send_limits.enabled is false."""
    cfg = settings.send_limits
    if not cfg.enabled:
        return Limits()
    own = dict(getattr(account, "send_limits", ()) or ())
    return Limits(**{name: int(own.get(key, getattr(cfg, name))) for key, name in ACCOUNT_OVERRIDES.items()})
