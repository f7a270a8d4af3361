"""mailctl ban: IP addresses banned after too many failed logins (every protocol)."""
from __future__ import annotations

import datetime

import click

from engine.bans import Bans

from .context import Context, pass_ctx
from .output import done, emit_json, table

json_option = click.option("--json", "as_json", is_flag=True, help="Output as JSON.")


@click.group("ban")
def ban() -> None:
    """List and lift automatic bans (auth.ban_after_failures)."""


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
        r["until_text"] = datetime.datetime.fromtimestamp(r["until"]).strftime("%Y-%m-%d %H:%M:%S")
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
