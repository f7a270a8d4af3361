"""mailctl who: the open IMAP, POP3 and SMTP sessions of the running server."""
from __future__ import annotations

import datetime as dt

import click

from engine import control

from .context import Context, pass_ctx
from .output import emit_json, table


@click.command("who")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@click.option("--protocol", help="Only sessions of this protocol (imap, pop3, smtp ...).")
@pass_ctx
def who(ctx: Context, as_json: bool, protocol: str | None) -> None:
    """Show who is connected to the running server (like doveadm who)."""
    reply = control.request(ctx.existing_root(), "who")
    rows = [s for s in reply.get("sessions", []) if not protocol or s.get("protocol") == protocol]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        r["since"] = dt.datetime.fromtimestamp(r.get("since", 0)).strftime("%Y-%m-%d %H:%M:%S")
    table(rows, [("user", "User"), ("protocol", "Protocol"), ("ip", "IP"), ("since", "Since"), ("id", "Id")])


COMMANDS = [who]
