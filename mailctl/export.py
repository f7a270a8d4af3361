"""mailctl export: one account's mail as a Maildir++ tree or mbox files."""
from __future__ import annotations

import click

from engine.export import export_account

from .context import Context, pass_ctx
from .output import done


@click.command("export")
@click.argument("address")
@click.argument("dest", metavar="DEST")
@click.option("--format", "fmt", type=click.Choice(["maildir", "mbox"]), required=True,
              help="maildir: a Maildir++ tree; mbox: one mboxrd file per folder (DEST/<folder>.mbox).")
@click.option("--folder", metavar="FOLDER", help="Only this folder (with mbox and DEST ending in .mbox: that file).")
@pass_ctx
def export(ctx: Context, address, dest, fmt, folder) -> None:
    """Export ADDRESS's mail with flags and internal dates to DEST."""
    done(export_account(ctx.existing_root(), address, fmt, dest, folder).summary())


COMMANDS = [export]
