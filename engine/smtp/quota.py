"""Quota decisions made during the SMTP dialogue, so that a full mailbox never turns into
a bounce to a sender nobody checked (backscatter).

A mailbox already at or over its quota is refused at RCPT. A message that would take a
mailbox past its quota by more than mailbox.quota_grace_percent (Dovecot's quota_grace)
is refused at the end of DATA, for the whole transaction, when the client is not
authenticated; within the grace it is delivered. An authenticated client gets a DSN for
a copy refused after 250, as before.
"""
from __future__ import annotations

from ..delivery import with_grace
from ..errors import MailError
from ..maildir import Maildir
from .replies import OVER_QUOTA_PERM, OVER_QUOTA_TEMP


def refuses(root, settings, account, size: int) -> bool:
    """Whether the account's mailbox cannot take a message of `size` bytes: it is full
    already, or the message would take it past the grace."""
    quota = int(account.quota_mb * 1024 * 1024)
    if not quota:
        return False
    try:
        used, _ = Maildir.for_account(root, account.domain, account.local).quota_usage()
    except (OSError, MailError):           # no Maildir yet (first mail): empty
        return False
    return used >= quota or used + size > with_grace(quota, settings.mailbox.quota_grace_percent)


def all_refuse(root, settings, accounts, size: int) -> bool:
    """RCPT: every mailbox a recipient reaches is full (size: the SIZE declared, or 0)."""
    return bool(accounts) and all(refuses(root, settings, a, size) for a in accounts)


def first_refusing(root, settings, accounts, size: int) -> str | None:
    """End of DATA: the address of the first mailbox that cannot take the message."""
    for account in accounts:
        if refuses(root, settings, account, size):
            return account.address
    return None


def full_reply(settings) -> str:
    return str(OVER_QUOTA_PERM if settings.relay.over_quota_permanent else OVER_QUOTA_TEMP)
