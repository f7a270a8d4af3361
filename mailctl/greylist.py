"""mailctl greylist: the greylisting records under state/greylist/ (engine/greylist.py)."""
from __future__ import annotations

import datetime

import click

from engine.greylist import Greylist

from .context import Context, confirm, pass_ctx
from .output import done, emit_json, table

json_option = click.option("--json", "as_json", is_flag=True, help="Output as JSON.")


def _store(ctx: Context) -> Greylist:
    return Greylist(ctx.existing_root(), ctx.settings.greylist)


@click.group("greylist")
def greylist() -> None:
    """Greylisting's records: list them, let a client through, remove expired ones."""


@greylist.command("list")
@click.option("--all", "include_expired", is_flag=True, help="Show expired records too.")
@json_option
@pass_ctx
def list_(ctx: Context, include_expired: bool, as_json: bool) -> None:
    """Show the triplets (client network, sender, recipient) with their state:
    waiting (deferred, not retried yet), passed, or allowed (a whole client network)."""
    cfg = ctx.settings.greylist
    rows = [r.public(cfg) for r in _store(ctx).records(include_expired)]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        for key in ("created", "last_used", "expires"):
            r[f"{key}_text"] = _when(r[key])
    table(rows, [("client", "Client"), ("sender", "Sender"), ("recipient", "Recipient"), ("state", "State"),
                 ("created_text", "First try"), ("last_used_text", "Last used"), ("expires_text", "Expires")])


@greylist.command("allow")
@click.argument("ip")
@pass_ctx
def allow(ctx: Context, ip: str) -> None:
    """Let the client network of IP (its greylist.ip_prefix_v4 / v6 network) through
    greylisting at once, until greylist.pass_expiry_days after its last use."""
    network = _store(ctx).allow(ip)
    done(f"greylisting lets {network} through")


@greylist.command("flush")
@click.option("--all", "everything", is_flag=True, help="Remove every record, not only expired ones "
                                                        "(every sender is greylisted anew).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (with --all).")
@pass_ctx
def flush(ctx: Context, everything: bool, yes: bool) -> None:
    """Remove expired records (the server also does every 4 hours)."""
    store = _store(ctx)
    if everything:
        confirm(yes, "Remove every greylisting record?")
    n = store.flush(everything)
    done(f"{n} greylisting record(s) removed")


def _when(t) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else ""


COMMANDS = [greylist]
