"""mailctl public: a domain's public folders (IMAP "Public/..."), and who may use them."""
from __future__ import annotations

import click

from engine.acl import admin

from .context import Context, pass_ctx
from .output import done, emit_json, table, warn


@click.group("public")
def public() -> None:
    """Public folders of a domain, seen by its users under Public/ as their rights allow."""


def _grants(ctx: Context, grants: tuple[str, ...]) -> list:
    out = []
    for g in grants:
        who, eq, rights = g.partition("=")
        if not eq:
            raise click.BadParameter(f"{g!r}: give WHO=RIGHTS, e.g. anyone=lr", param_hint="--grant")
        out.append((admin.parse_who(ctx.directory(), who), *admin.parse_change(rights)))
    return out


@public.command("add")
@click.argument("domain")
@click.argument("folder")
@click.option("--grant", "grants", multiple=True, metavar="WHO=RIGHTS",
              help="Rights for an address, 'anyone' or 'authenticated' (RFC 4314 letters lrswipkxtea); repeatable.")
@pass_ctx
def add(ctx: Context, domain: str, folder: str, grants: tuple[str, ...]) -> None:
    """Create public FOLDER of DOMAIN (use / for hierarchy) and grant rights on it."""
    changes = _grants(ctx, grants)
    f = admin.public_folder(ctx.existing_root(), ctx.directory(), domain, folder, create=True)
    for who, mode, letters in changes:
        admin.grant_public(f, who, mode, letters)
    if not admin.rows(f.path):
        warn("nobody has rights on it yet: add --grant anyone=lr (or an address)")
    done(f"public folder {f.name} of {domain.lower()} ready")


@public.command("grant")
@click.argument("domain")
@click.argument("folder")
@click.argument("who")
@click.argument("rights")
@pass_ctx
def grant(ctx: Context, domain: str, folder: str, who: str, rights: str) -> None:
    """Give WHO (an address, 'anyone' or 'authenticated') RIGHTS on public FOLDER:
    letters (lr, lrswite...), +letters / -letters to add or take away, or none
    (give -letters after --, e.g. `-- -w`)."""
    entry = admin.parse_who(ctx.directory(), who)
    mode, letters = admin.parse_change(rights)
    f = admin.public_folder(ctx.existing_root(), ctx.directory(), domain, folder, create=False)
    admin.grant_public(f, entry, mode, letters)
    done(f"{who} on public folder {f.name}: {_now(admin.rows(f.path), entry)}")


@public.command("list")
@click.argument("domain")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def list_(ctx: Context, domain: str, as_json: bool) -> None:
    """List DOMAIN's public folders with their rights."""
    rows = admin.public_listing(ctx.existing_root(), ctx.directory(), domain)
    if as_json:
        emit_json(rows)
    else:
        table(rows, [("folder", "Folder"), ("rights", "Rights")])


def _now(rows: list[dict], entry) -> str:
    return next((r["rights"] for r in rows if r["who"] == entry.identifier()), "no rights")


COMMANDS = [public]
