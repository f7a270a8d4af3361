"""mailctl migrate: move a whole installation (export a bundle, import it into a new
root, verified against its manifest) and check the DNS records the domains need."""
from __future__ import annotations

import click

from engine import migrate as engine_migrate
from engine.root import Root

from .backup import progress_for, verbose_option
from .context import Context, pass_ctx
from .output import done, emit_json, error, table

json_option = click.option("--json", "as_json", is_flag=True, help="Output as JSON.")


@click.group("migrate")
def migrate() -> None:
    """Move this installation to another machine or path; check its DNS."""


@migrate.command("export")
@click.argument("bundle", metavar="BUNDLE.tar.gz")
@verbose_option
@pass_ctx
def export(ctx: Context, bundle, verbose) -> None:
    """Write everything (settings, accounts, mail, keys, queue) into one verified bundle."""
    with progress_for(verbose) as progress:
        result = engine_migrate.export_bundle(ctx.existing_root(), bundle, progress)
    done(result.summary())


@migrate.command("import")
@click.argument("bundle", metavar="BUNDLE.tar.gz", type=click.Path(dir_okay=False, exists=True))
@click.option("--root", "new_root", metavar="NEW", help="The new root (default: the global --root).")
@verbose_option
@pass_ctx
def import_(ctx: Context, bundle, new_root, verbose) -> None:
    """Unpack a bundle into a new, empty root and check it against the bundle's manifest."""
    target = Root(new_root) if new_root else ctx.root
    with progress_for(verbose) as progress:
        report = engine_migrate.import_bundle(bundle, target, progress)
    for p in report.problems[:50]:
        error(p)
    done(report.summary())
    if not report.ok:
        raise click.exceptions.Exit(1)


@migrate.command("check")
@click.option("--ip", "ips", multiple=True, metavar="ADDRESS", help="This server's public IP (repeatable), "
              "for the A/AAAA and PTR records.")
@click.option("--resolver", metavar="IP[:PORT]", help="DNS server to ask (default: the system's).")
@click.option("--no-lookup", is_flag=True, help="Only print the records; do not query DNS.")
@json_option
@pass_ctx
def check(ctx: Context, ips, resolver, no_lookup, as_json) -> None:
    """Print the DNS records the domains need and whether live DNS has them."""
    import ipaddress
    from engine.errors import InvalidInput
    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidInput(f"--ip {ip}: not an IP address") from None
    records = engine_migrate.needed_records(ctx.existing_root(), ctx.settings, list(ips))
    if not no_lookup:
        engine_migrate.check_records(records, engine_migrate.make_resolver(resolver))
    rows = [r.public() for r in records]
    if as_json:
        emit_json(rows)
    else:
        for r in rows:
            r["found"] = "; ".join(r["found"])
        table(rows, [("type", "Type"), ("name", "Name"), ("value", "Value"), ("status", "Status"), ("note", "Note")])
    bad = [r for r in records if r.status not in ("ok", "not checked")]
    if not no_lookup and bad:
        if not as_json:
            error(f"{len(bad)} of {len(records)} records are missing or differ")
        raise click.exceptions.Exit(1)


COMMANDS = [migrate]
