"""mailctl signature: the signature of an account, or the signature or disclaimer of a domain,
on the mail its users submit (engine/signatures.py): set, show, off."""
from __future__ import annotations

import click

from engine import directory_edit
from engine.addresses import normalize_domain, parse_address
from engine.errors import NotFound

from .context import Context, pass_ctx
from .output import done, emit_json

KEYS = ("signature_text", "signature_html", "signature_mode", "signature_replies", "signature_local")


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    with click.open_file(path, encoding="utf-8", errors="strict") as f:
        return f.read(16 * 1024 + 1).replace("\r\n", "\n")


def _target(ctx: Context, address: str | None, domain: str | None):
    if bool(address) == bool(domain):
        raise click.UsageError("give an ADDRESS or --domain DOMAIN (one of them)")
    directory = ctx.directory()
    if domain:
        d = directory.domain(normalize_domain(domain))
        if d is None:
            raise NotFound(f"no domain {domain}; see 'mailctl domain list'")
        return "domain", d
    a = directory.account(str(parse_address(address)))
    if a is None:
        raise NotFound(f"account {address} does not exist; see 'mailctl account list'")
    return "account", a


@click.group("signature")
def signature() -> None:
    """Signatures and disclaimers on submitted mail (per account, per domain)."""


@signature.command("set")
@click.argument("address", required=False)
@click.option("--domain", metavar="DOMAIN", help="The domain's signature or disclaimer instead of an account's.")
@click.option("--text-file", type=click.Path(dir_okay=False), help="The plain text ('-': stdin); %NAME%, %ADDRESS%.")
@click.option("--html-file", type=click.Path(dir_okay=False), help="The HTML version (without it, the text made HTML).")
@click.option("--mode", type=click.Choice(["if_none", "overwrite", "append"]),
              help="Domain: used when the account has none, instead of the account's, or after it.")
@click.option("--replies/--no-replies", default=None, help="Domain: replies get it too (default: no).")
@click.option("--local/--no-local", default=None, help="Domain: mail to local recipients only gets it too (default: no).")
@pass_ctx
def set_(ctx: Context, address, domain, text_file, html_file, mode, replies, local) -> None:
    """Set ADDRESS's signature, or (--domain) the domain's."""
    kind, who = _target(ctx, address, domain)
    values = {"signature_text": _read(text_file), "signature_html": _read(html_file)}
    if kind == "account" and (mode or replies is not None or local is not None):
        raise click.UsageError("--mode, --replies and --local are a domain's (use --domain)")
    values |= {"signature_mode": mode, "signature_replies": replies, "signature_local": local}
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        raise click.UsageError("give --text-file and/or --html-file (or, for a domain, its switches)")
    _store(ctx, kind, who, values, "set")


@signature.command("show")
@click.argument("address", required=False)
@click.option("--domain", metavar="DOMAIN")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def show(ctx: Context, address, domain, as_json: bool) -> None:
    """Show ADDRESS's (or the domain's) signature."""
    kind, who = _target(ctx, address, domain)
    data = {k: getattr(who, k) for k in KEYS if hasattr(who, k)}
    if as_json:
        emit_json(data)
        return
    for k, v in data.items():
        click.echo(f"{k}: {v!r}" if not isinstance(v, str) or "\n" not in v else f"{k}:\n{v}")


@signature.command("off")
@click.argument("address", required=False)
@click.option("--domain", metavar="DOMAIN")
@pass_ctx
def off(ctx: Context, address, domain) -> None:
    """Remove ADDRESS's (or the domain's) signature."""
    kind, who = _target(ctx, address, domain)
    _store(ctx, kind, who, {"signature_text": None, "signature_html": None}, "removed")


def _store(ctx: Context, kind: str, who, values: dict, what: str) -> None:
    """Write values into the domain's or the account's file."""
    if kind == "domain":
        directory_edit.set_domain(ctx.existing_root(), ctx.settings, who.name, **values)
        done(f"signature of {who.name} {what}")
    else:
        directory_edit.set_account(ctx.existing_root(), ctx.settings, who.address, **values)
        done(f"signature of {who.address} {what}")


COMMANDS = [signature]
