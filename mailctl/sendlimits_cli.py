"""An account's outbound sending limits on the command line: what `mailctl account show`
says of them, `mailctl account unblock` and `mailctl account limits`
(engine/sendcounts.py, engine/sendlimits_settings.py)."""
from __future__ import annotations

import dataclasses
import datetime

import click

from engine import directory_edit
from engine.sendcounts import SendCounts
from engine.sendlimits_settings import ACCOUNT_OVERRIDES, limits_for

from .context import Context
from .output import done, emit_json, fields


def sending(ctx: Context, acc) -> dict:
    """The account's counts, limits (0 = none) and block, as `account show --json` gives them."""
    settings = ctx.settings
    usage = SendCounts(ctx.existing_root()).usage(acc.address, settings.send_limits.unblock_after_hours)
    own = dict(acc.send_limits)
    return {**usage.public(), "limits": dataclasses.asdict(limits_for(settings, acc)),
            "own_limits": {name: own[key] for key, name in ACCOUNT_OVERRIDES.items() if key in own}}


def shown(s: dict) -> dict:
    """The same for people: a few 'key: value' lines."""
    lim = s["limits"]

    def of(n: int, limit: int, what: str) -> str:
        return f"{n} {what}" + (f" of {limit}" if limit else " (no limit)")

    blocked = "no"
    if s["blocked"]:
        since = datetime.datetime.fromtimestamp(s["blocked_since"]).isoformat(" ", "seconds")
        blocked = f"yes, since {since} ({s['blocked_why']} reached; 'mailctl account unblock' lifts it)"
    return {"sent_last_hour": f"{of(s['messages_last_hour'], lim['messages_per_hour'], 'messages')}, "
                              f"{of(s['recipients_last_hour'], lim['recipients_per_hour'], 'external recipients')}",
            "sent_last_day": f"{of(s['messages_last_day'], lim['messages_per_day'], 'messages')}, "
                             f"{of(s['recipients_last_day'], lim['recipients_per_day'], 'external recipients')}",
            "sending_blocked": blocked}


def unblock(ctx: Context, acc) -> str:
    store = SendCounts(ctx.existing_root())
    was = store.usage(acc.address, ctx.settings.send_limits.unblock_after_hours).blocked
    store.unblock(acc.address)
    return (f"{acc.address} unblocked" if was else f"{acc.address} was not blocked") + \
        "; its sending counts start afresh"


DEFAULT = "default"


class _LimitValue(click.ParamType):
    """A whole number (0 = no limit) or 'default' (the [send_limits] value)."""
    name = "N|default"

    def convert(self, value, param, ctx):
        text = str(value)
        if text == DEFAULT:
            return DEFAULT
        if text.isascii() and text.isdigit() and len(text) <= 8 and int(text) <= 10_000_000:
            return int(text)
        self.fail("must be a whole number from 0 (no limit) to 10000000, or 'default'", param, ctx)


def limit_options(f):
    for name, help_ in reversed((("messages-per-hour", "Messages to external recipients in any 60 minutes."),
                                 ("messages-per-day", "Messages to external recipients in any 24 hours."),
                                 ("recipients-per-hour", "Distinct external recipients in any 60 minutes."),
                                 ("recipients-per-day", "Distinct external recipients in any 24 hours."))):
        f = click.option(f"--{name}", type=_LimitValue(), metavar="N|default", help=help_)(f)
    return f


def show_or_set(ctx: Context, acc, given: dict, as_json: bool) -> None:
    """`mailctl account limits`: set the options given (None: not given), then show."""
    changes = {f"send_{name}": None if value == DEFAULT else value
               for name, value in given.items() if value is not None}
    if changes:
        directory_edit.set_account(ctx.existing_root(), ctx.settings, acc.address, **changes)
        acc = ctx.directory().account(acc.address) or acc
    data = sending(ctx, acc)
    if as_json:
        emit_json({"address": acc.address, "limits": data["limits"], "own_limits": data["own_limits"]})
    elif changes:
        done(f"sending limits of {acc.address} set")
    else:
        fields({"address": acc.address, **{k: v or "no limit" for k, v in data["limits"].items()},
                "set_for_this_account": ", ".join(data["own_limits"]) or "none (the [send_limits] defaults)"})
