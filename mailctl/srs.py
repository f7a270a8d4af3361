"""mailctl srs: the Sender Rewriting Scheme's secret and addresses (engine/srs_forward.py)."""
from __future__ import annotations

import time

import click

from engine import srs, srs_secret
from engine.addresses import normalize_domain, parse_address
from engine.errors import InvalidInput
from engine.srs_forward import signer

from .context import Context, pass_ctx
from .output import done


@click.group("srs")
def srs_group() -> None:
    """SRS for forwarded mail: rotate the secret, make or reverse an address."""


@srs_group.command("rotate")
@pass_ctx
def rotate(ctx: Context) -> None:
    """Sign new SRS addresses with a new secret; the older ones (up to 4) still reverse
    bounces to addresses made with them. A running server picks it up at once."""
    n = srs_secret.rotate(ctx.existing_root())
    done(f"new SRS secret written to state/{srs_secret.FILE_NAME} ({n - 1} older kept for bounces)")


@srs_group.command("forward")
@click.argument("sender")
@click.argument("domain")
@pass_ctx
def forward_(ctx: Context, sender: str, domain: str) -> None:
    """Print the SRS address SENDER gets when DOMAIN forwards its mail."""
    sender = str(parse_address(sender))
    domain = normalize_domain(domain)
    click.echo(srs.forward(signer(ctx.existing_root(), ctx.settings), sender, domain, time.time()))


@srs_group.command("reverse")
@click.argument("address")
@pass_ctx
def reverse(ctx: Context, address: str) -> None:
    """Print the address an SRS ADDRESS stands for, or why it is refused."""
    try:
        click.echo(srs.reverse(signer(ctx.existing_root(), ctx.settings), address, time.time()))
    except srs.SRSError as e:
        raise InvalidInput(f"{address[:200]}: not a valid SRS address of ours ({e})") from None


COMMANDS = [srs_group]
