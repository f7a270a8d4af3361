"""mailctl init: create a mail root."""
from __future__ import annotations

import click

from engine import directory_edit, newroot

from .context import Context, pass_ctx
from .output import done


@click.command("init")
@click.option("--domain", "domains", multiple=True, metavar="DOMAIN", help="Add this domain (repeatable).")
@click.option("--hostname", default="localhost", show_default=True, help="This server's host name (certificate, banner, HELO).")
@click.option("--high-ports", is_flag=True, help="Use unprivileged ports (2525, 2587, 2465, 2143, 2993, 2110, 2995).")
@pass_ctx
def init(ctx: Context, domains: tuple[str, ...], hostname: str, high_ports: bool) -> None:
    """Create a new mail root with mailctl.toml, the folder layout and a self-signed certificate.

    Run as a non-root user, unprivileged ports are written (as with --high-ports). Run as
    root, the system user server.user (mailctl) is created if needed and given the root."""
    from engine.addresses import normalize_domain
    hostname = normalize_domain(hostname) if hostname != "localhost" else hostname
    high = high_ports or newroot.wants_high_ports()
    notes = newroot.init_root(ctx.root, hostname=hostname, high_ports=high)
    for name in domains:
        directory_edit.add_domain(ctx.root, ctx.settings, name)
        notes.append(f"domain {normalize_domain(name)} added")
    notes += newroot.give_to_serving_user(ctx.root)
    done(f"initialised mail root {ctx.root.path}")
    for note in notes:
        done(f"  {note}")


COMMANDS = [init]
