"""mailctl systemd-unit: a systemd unit that runs the server of this root."""
from __future__ import annotations

import click

from .context import Context, pass_ctx


@click.command("systemd-unit")
@pass_ctx
def systemd_unit(ctx: Context) -> None:
    """Print a systemd unit for this root (Type=simple, Restart=on-failure, hardened).

    Install it with: mailctl systemd-unit > /etc/systemd/system/mailctl.service &&
    systemctl daemon-reload && systemctl enable --now mailctl"""
    from engine import systemd
    click.echo(systemd.unit(ctx.existing_root()), nl=False)


COMMANDS = [systemd_unit]
