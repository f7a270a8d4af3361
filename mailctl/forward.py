"""mailctl forward: forwarding of an account's mail."""
from __future__ import annotations

import click

from engine import directory_edit
from engine.addresses import parse_address

from .context import Context, pass_ctx
from .output import done


@click.group("forward")
def forward() -> None:
    """Forward an account's mail to other addresses."""


@forward.command("set")
@click.argument("address")
@click.argument("targets", nargs=-1, required=True)
@click.option("--keep-copy/--no-keep-copy", default=False, show_default=True,
              help="Also keep a copy in the account's own mailbox.")
@pass_ctx
def set_(ctx: Context, address: str, targets: tuple[str, ...], keep_copy: bool) -> None:
    """Forward mail for ADDRESS to TARGET... (replaces earlier targets)."""
    result = directory_edit.set_forward(ctx.existing_root(), ctx.settings, address, list(targets), keep_copy)
    done(f"{parse_address(address)} forwards to {', '.join(result)}" + (" and keeps a copy" if keep_copy else ""))


@forward.command("clear")
@click.argument("address")
@pass_ctx
def clear(ctx: Context, address: str) -> None:
    """Stop forwarding; mail stays in the account's mailbox."""
    directory_edit.clear_forward(ctx.existing_root(), ctx.settings, address)
    done(f"{parse_address(address)} no longer forwards")


COMMANDS = [forward]
