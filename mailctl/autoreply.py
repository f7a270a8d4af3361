"""mailctl autoreply: an account's out-of-office reply (a Sieve vacation action in its active
script, engine/sieve/outofoffice.py): set, show, off."""
from __future__ import annotations

import click

from engine import mailbox_admin
from engine.addresses import parse_address
from engine.sieve import outofoffice

from .context import Context, pass_ctx
from .output import done, emit_json

def _account(ctx: Context, address: str):
    address = str(parse_address(address))
    md = mailbox_admin.open_mailbox(ctx.existing_root(), ctx.directory(), address)
    return ctx.directory().account(address), md.path


def _read(path: str | None) -> str:
    if path is None:
        return ""
    with click.open_file(path, encoding="utf-8", errors="strict") as f:
        return f.read(outofoffice.MAX_TEXT + 1)


@click.group("autoreply")
def autoreply() -> None:
    """An account's out-of-office reply (once per sender per N days; never to lists or robots)."""


@autoreply.command("set")
@click.argument("address")
@click.option("--subject", default=outofoffice.DEFAULT_SUBJECT, show_default=True,
              help="The reply's subject; %SUBJECT% is the original's, %NAME% the account's name.")
@click.option("--body-file", type=click.Path(dir_okay=False), help="The reply's text (UTF-8; '-' reads stdin); "
              "without it the root's templates/autoreply.txt. %NAME% and %ADDRESS% are replaced.")
@click.option("--html-file", type=click.Path(dir_okay=False), help="An HTML version too (multipart/alternative).")
@click.option("--from", "start", metavar="DATE", default="", help="First day it answers (YYYY-MM-DD).")
@click.option("--until", metavar="DATE", default="", help="Last day it answers (YYYY-MM-DD).")
@click.option("--days", type=int, default=7, show_default=True, help="One reply per sender per this many days.")
@pass_ctx
def set_(ctx: Context, address: str, subject: str, body_file, html_file, start: str, until: str, days: int) -> None:
    """Turn on ADDRESS's autoreply (replacing the one it had)."""
    account, home = _account(ctx, address)
    body = _read(body_file) or outofoffice.template(ctx.existing_root().path)
    reply = outofoffice.Autoreply(subject=subject, body=body,
                                  html=_read(html_file), start=start, until=until, days=days)
    script = outofoffice.set_reply(home, reply, account.name, account.address)
    done(f"autoreply on for {account.address} (in its Sieve script {script!r})")


@autoreply.command("show")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def show(ctx: Context, address: str, as_json: bool) -> None:
    """Show ADDRESS's autoreply."""
    account, home = _account(ctx, address)
    reply = outofoffice.show(home)
    data = {"address": account.address, "enabled": reply is not None, **(vars(reply) if reply else {})}
    if as_json:
        emit_json(data)
        return
    if reply is None:
        click.echo(f"{account.address}: no autoreply")
        return
    span = f"from {reply.start or 'now'} until {reply.until or 'turned off'}"
    click.echo(f"{account.address}: autoreply on, {span}, one reply per sender per {reply.days} day(s)")
    click.echo(f"Subject: {reply.subject}\n\n{reply.body}" + ("\n(and an HTML version)" if reply.html else ""))


@autoreply.command("off")
@click.argument("address")
@pass_ctx
def off(ctx: Context, address: str) -> None:
    """Turn ADDRESS's autoreply off (the rest of its Sieve script stays)."""
    account, home = _account(ctx, address)
    if outofoffice.turn_off(home):
        done(f"autoreply off for {account.address}")
    else:
        done(f"{account.address} had no autoreply")


COMMANDS = [autoreply]
