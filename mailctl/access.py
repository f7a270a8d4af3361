"""mailctl access: the run-time access entries of state/access.toml (engine/access/entries.py):
per-listener allow/deny networks, and sender/recipient block-list patterns, each with an
optional expiry. The static policy (ban exemptions, block lists, IP ranges, incoming
relays) is the [access] section of mailctl.toml."""
from __future__ import annotations

import datetime
import time

import click

from engine.access.entries import KINDS, AccessEntries, make_entry
from engine.errors import InvalidInput
from engine.settings import LISTENERS

from .context import Context, pass_ctx
from .output import done, emit_json, table

json_option = click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
MAX_MINUTES = 100 * 365 * 24 * 60          # a century: past it, leave the expiry out


def minutes_until(minutes: float | None, expires: str | None, now: float) -> float:
    """The Unix time an entry ends (0 = never) from --minutes or --expires."""
    if minutes is not None and expires is not None:
        raise InvalidInput("give --minutes or --expires, not both")
    if minutes is not None:
        if not 0 < minutes <= MAX_MINUTES:            # nan and inf fail it too
            raise InvalidInput(f"--minutes must be more than 0 and at most {MAX_MINUTES}")
        return now + minutes * 60
    if expires is not None:
        return parse_when(expires, now)
    return 0.0


def parse_when(text: str, now: float) -> float:
    """'2026-12-31', '2026-12-31 18:00', '2026-12-31T18:00:00+01:00' (local time unless an
    offset is given) as Unix time; it must be in the future."""
    raw = str(text).strip()
    try:
        if len(raw) > 40:
            raise ValueError
        when = datetime.datetime.fromisoformat(raw)
        stamp = when.timestamp()
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(f"--expires {raw[:40]!r} is not a date and time (like 2026-12-31 or "
                           f"2026-12-31T18:00)") from None
    if stamp <= now:
        raise InvalidInput(f"--expires {raw!r} is in the past")
    return stamp


def _when(t) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "never"


@click.group("access")
def access() -> None:
    """Access entries that change at run time: allow/deny networks per listener and
    blocked senders/recipients, each with an optional expiry. Every serving process
    sees a change at its next connection or RCPT TO, without a reload."""


@access.command("list")
@click.option("--kind", type=click.Choice(KINDS), help="Only entries of this kind.")
@json_option
@pass_ctx
def list_(ctx: Context, kind: str | None, as_json: bool) -> None:
    """Show the entries in force (expired ones are gone)."""
    store = AccessEntries(ctx.existing_root())
    now = time.time()
    rows = [e.public(now) for e in store.listed((kind,) if kind else KINDS)]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        r["expires_text"] = _when(r["expires"])
        r["listeners_text"] = ", ".join(r["listeners"]) or ("all" if r["kind"] in ("allow", "deny") else "")
    table(rows, [("id", "Id"), ("kind", "Kind"), ("value", "Network or pattern"), ("listeners_text", "Listeners"),
                 ("expires_text", "Expires"), ("reason", "Reason")])


@access.command("add")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("value")
@click.option("--listener", "listeners", multiple=True, metavar="NAME",
              help="allow/deny: only on this listener (smtp, submission, imap, ...; repeat for more). "
                   "Default: every listener.")
@click.option("--minutes", type=float, help="The entry ends this many minutes from now.")
@click.option("--expires", metavar="WHEN", help="The entry ends then: 2026-12-31 or 2026-12-31T18:00 (local time).")
@click.option("--reason", default="", help="A note kept with the entry (shown by list, logged on a refusal).")
@json_option
@pass_ctx
def add(ctx: Context, kind: str, value: str, listeners: tuple[str, ...], minutes: float | None,
        expires: str | None, reason: str, as_json: bool) -> None:
    """Add an entry. KIND: 'deny' NETWORK (refused at connect: SMTP 554 5.7.1), 'allow'
    NETWORK (a hole in a wider deny: the narrowest network decides), 'sender' PATTERN or
    'recipient' PATTERN (550 5.7.1 at RCPT TO; user@example.com, example.com,
    *.example.com, *@spam.example, sales@*). An entry of the same kind, value and
    listeners is replaced."""
    now = time.time()
    until = minutes_until(minutes, expires, now)
    entry = make_entry(kind, value, listeners, until, reason, now, known_listeners=tuple(LISTENERS))
    AccessEntries(ctx.existing_root()).add(entry)
    if as_json:
        emit_json(entry.public(now))
        return
    where = f" on {', '.join(entry.listeners)}" if entry.listeners else ""
    done(f"access entry {entry.id}: {entry.kind} {entry.value}{where}, expires {_when(entry.expires)}")


@access.command("remove")
@click.argument("what")
@click.option("--kind", type=click.Choice(KINDS), help="Only entries of this kind (when WHAT is a value).")
@pass_ctx
def remove(ctx: Context, what: str, kind: str | None) -> None:
    """Remove the entry with id WHAT, or every entry whose network or pattern is WHAT."""
    gone = AccessEntries(ctx.existing_root()).remove(what, kind)
    for e in gone:
        done(f"access entry {e.id} removed: {e.kind} {e.value}")


COMMANDS = [access]
