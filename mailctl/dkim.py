"""mailctl dkim: make and show the DKIM keys that sign mail from local domains."""
from __future__ import annotations

import click

from .context import Context, pass_ctx
from .output import done, emit_json


@click.group("dkim")
def dkim() -> None:
    """DKIM keys (dkim/<domain>.<selector>.key); mail from local domains is signed at send time."""


@dkim.command("keygen")
@click.argument("domain")
@click.option("--selector", default="mailctl", show_default=True, help="Selector (the DNS name is SELECTOR._domainkey.DOMAIN).")
@click.option("--algorithm", type=click.Choice(["rsa2048", "ed25519"]), default="rsa2048", show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing key of the same selector.")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def keygen(ctx: Context, domain, selector, algorithm, force, as_json) -> None:
    """Make a key for DOMAIN and print the DNS TXT record to publish."""
    from engine.errors import NotFound
    from engine.outbound import dkim as engine_dkim
    root = ctx.existing_root()
    if not ctx.directory().is_local_domain(domain.lower()):
        raise NotFound(f"{domain}: not a local domain; add it first with 'mailctl domain add {domain}'")
    key = engine_dkim.keygen(root, domain, selector, algorithm, force)
    if as_json:
        emit_json(key.public())
        return
    done(f"key written to dkim/{key.path.name}; publish this TXT record, then mail from {key.domain} is signed:")
    click.echo(key.zone_line())


@dkim.command("show")
@click.argument("domain")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def show(ctx: Context, domain, as_json) -> None:
    """Show DOMAIN's keys and their DNS records (the first one signs)."""
    from engine.outbound import dkim as engine_dkim
    found = engine_dkim.show(ctx.existing_root(), domain)
    if as_json:
        emit_json([k.public() for k in found])
        return
    for i, k in enumerate(found):
        click.echo(f"{'signing' if i == 0 else 'standby'}: {k.algorithm} dkim/{k.path.name}")
        click.echo(f"  {k.zone_line()}")


COMMANDS = [dkim]
