"""mailctl ban: IP addresses banned after too many failed logins (every protocol)."""
from __future__ import annotations

import datetime

import click

from engine.bans import Bans, normalize_ip
from engine.errors import InvalidInput

from .access import MAX_MINUTES

from .context import Context, pass_ctx
from .output import done, emit_json, table

json_option = click.option("--json", "as_json", is_flag=True, help="Output as JSON.")


@click.group("ban")
def ban() -> None:
    """Ban IP addresses, list and lift bans: automatic ones (auth.ban_after_failures) and
    those made by 'ban add'."""


@ban.command("add")
@click.argument("ip")
@click.option("--minutes", type=float, help="The ban ends this many minutes from now (default: when lifted).")
@click.option("--reason", default="banned by the administrator", help="A note kept with the ban.")
@pass_ctx
def add(ctx: Context, ip: str, minutes: float | None, reason: str) -> None:
    """Ban IP on every listener now (SMTP gets 554 5.7.1 at connect, IMAP and POP3 a
    refusal greeting), in every serving process, even when access.ban_exempt holds it."""
    if minutes is not None and not 0 < minutes <= MAX_MINUTES:       # nan and inf fail it too
        raise InvalidInput(f"--minutes must be more than 0 and at most {MAX_MINUTES}")
    if len(reason) > 200 or not reason.isprintable():
        raise InvalidInput("the reason must be at most 200 printable characters on one line")
    bans = Bans(ctx.existing_root(), ctx.settings)
    bans.ban(ip, minutes, reason, "manual", manual=True)
    done(f"{normalize_ip(ip)} banned " + (f"for {minutes:g} minutes" if minutes else "until lifted"))


@ban.command("list")
@json_option
@pass_ctx
def list_(ctx: Context, as_json: bool) -> None:
    """Show banned IP addresses with the time the ban ends."""
    rows = Bans(ctx.existing_root(), ctx.settings).list()
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        r["until_text"] = (datetime.datetime.fromtimestamp(r["until"]).strftime("%Y-%m-%d %H:%M:%S")
                           if r["until"] is not None else "lifted by hand")
    table(rows, [("ip", "IP"), ("until_text", "Banned until"), ("protocol", "Protocol"), ("reason", "Reason")])


@ban.command("remove")
@click.argument("ip")
@pass_ctx
def remove(ctx: Context, ip: str) -> None:
    """Lift the ban on IP now (and forget its failed logins)."""
    bans = Bans(ctx.existing_root(), ctx.settings)
    bans.remove(ip)
    done(f"ban on {ip.strip()} lifted")


COMMANDS = [ban]
