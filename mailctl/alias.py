"""mailctl alias: addresses that deliver to other addresses."""
from __future__ import annotations

import click

from engine import directory_edit
from engine.addresses import normalize_domain, parse_address
from engine.errors import NotFound

from .context import Context, pass_ctx
from .output import done, emit_json, table


@click.group("alias")
def alias() -> None:
    """Add, remove and list address aliases."""


@alias.command("add")
@click.argument("address")
@click.argument("targets", nargs=-1, required=True)
@pass_ctx
def add(ctx: Context, address: str, targets: tuple[str, ...]) -> None:
    """Make ADDRESS deliver to TARGET... (local names, local or external addresses).

    Adding to an existing alias adds targets."""
    result = directory_edit.add_alias(ctx.existing_root(), ctx.settings, address, list(targets))
    done(f"alias {parse_address(address)} -> {', '.join(result)}")


@alias.command("remove")
@click.argument("address")
@click.argument("targets", nargs=-1)
@pass_ctx
def remove(ctx: Context, address: str, targets: tuple[str, ...]) -> None:
    """Remove an alias, or only the TARGETs given."""
    directory_edit.remove_alias(ctx.existing_root(), ctx.settings, address, list(targets))
    done(f"alias {parse_address(address)} " + ("updated" if targets else "removed"))


@alias.command("list")
@click.argument("domain", required=False)
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def list_(ctx: Context, domain: str | None, as_json: bool) -> None:
    """List aliases, of one DOMAIN or all."""
    directory = ctx.directory()
    domains = directory.domains.values()
    if domain:
        d = directory.domain(normalize_domain(domain))
        if d is None:
            raise NotFound(f"domain {normalize_domain(domain)} does not exist")
        domains = [d]
    rows = [a.public() for d in sorted(domains, key=lambda d: d.name)
            for a in sorted(d.alias_map.values(), key=lambda a: a.local)]
    if as_json:
        emit_json(rows)
    else:
        table(rows, [("address", "Alias"), ("targets", "Targets"), ("enabled", "Enabled")])


COMMANDS = [alias]
