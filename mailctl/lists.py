"""mailctl list: distribution lists."""
from __future__ import annotations

import click

from engine import directory_edit
from engine.addresses import parse_address
from engine.domainkeys import LIST_MODES
from engine.errors import NotFound

from .context import Context, pass_ctx
from .output import done, emit_json, fields, table

json_option = click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
require_auth_option = click.option(
    "--require-auth/--no-require-auth", "require_auth", default=None,
    help="Take SMTP mail only from authenticated senders (AUTH on 587/465); "
         "default on for announce lists, off for others.")


@click.group("list")
def list_group() -> None:
    """Distribution lists: public, members-only or announce-only.

    The sender checks of members and announce lists look at the envelope sender, which
    anyone can forge on port 25; a list with require_auth takes mail over SMTP only
    from authenticated senders (local submissions count as authenticated)."""


@list_group.command("add")
@click.argument("address")
@click.option("--mode", type=click.Choice(LIST_MODES), default="public", show_default=True,
              help="Who may post: anyone, members only, or only the --sender.")
@click.option("--sender", default="", metavar="ADDRESS", help="The one who may post in announce mode.")
@click.option("--member", "members", multiple=True, metavar="ADDRESS", help="A first member (repeatable).")
@require_auth_option
@pass_ctx
def add(ctx: Context, address: str, mode: str, sender: str, members: tuple[str, ...], require_auth) -> None:
    """Create a distribution list."""
    created = directory_edit.add_list(ctx.existing_root(), ctx.settings, address, mode, sender, list(members),
                                      require_auth)
    done(f"list {created} added ({mode})")


@list_group.command("set")
@click.argument("address")
@click.option("--mode", type=click.Choice(LIST_MODES), help="Who may post: anyone, members only, or only the --sender.")
@click.option("--sender", metavar="ADDRESS", help="The one who may post in announce mode.")
@require_auth_option
@pass_ctx
def set_(ctx: Context, address: str, mode, sender, require_auth) -> None:
    """Change a list's settings."""
    values = {k: v for k, v in {"mode": mode, "sender": sender, "require_auth": require_auth}.items()
              if v is not None}
    if not values:
        raise click.UsageError("give at least one option to change")
    directory_edit.set_list(ctx.existing_root(), ctx.settings, address, **values)
    done(f"list {parse_address(address)} updated: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))


@list_group.command("remove")
@click.argument("address")
@pass_ctx
def remove(ctx: Context, address: str) -> None:
    """Remove a list (members are not touched)."""
    directory_edit.remove_list(ctx.existing_root(), ctx.settings, address)
    done(f"list {parse_address(address)} removed")


def _lists(ctx: Context):
    return [lst for d in sorted(ctx.directory().domains.values(), key=lambda d: d.name)
            for lst in sorted(d.lists.values(), key=lambda lst: lst.local)]


@list_group.command("list")
@json_option
@pass_ctx
def list_(ctx: Context, as_json: bool) -> None:
    """List all distribution lists."""
    rows = [{**lst.public(), "members": len(lst.members)} for lst in _lists(ctx)]
    if as_json:
        emit_json(rows)
    else:
        table(rows, [("address", "List"), ("mode", "Mode"), ("sender", "Sender"),
                     ("members", "Members"), ("require_auth", "Auth"), ("enabled", "Enabled")])


@list_group.command("show")
@click.argument("address")
@json_option
@pass_ctx
def show(ctx: Context, address: str, as_json: bool) -> None:
    """Show a list with its members."""
    a = str(parse_address(address))
    d = ctx.directory().domain(a.rpartition("@")[2])
    lst = d.lists.get(a.partition("@")[0]) if d else None
    if lst is None:
        raise NotFound(f"list {a} does not exist; see 'mailctl list list'")
    emit_json(lst.public()) if as_json else fields(lst.public())


@list_group.group("member")
def member() -> None:
    """Add and remove list members."""


@member.command("add")
@click.argument("list_address", metavar="LIST")
@click.argument("addresses", nargs=-1, required=True)
@pass_ctx
def member_add(ctx: Context, list_address: str, addresses: tuple[str, ...]) -> None:
    """Add members to LIST."""
    members = directory_edit.change_list_members(ctx.existing_root(), ctx.settings, list_address, add=list(addresses))
    done(f"list {parse_address(list_address)} has {len(members)} members")


@member.command("remove")
@click.argument("list_address", metavar="LIST")
@click.argument("addresses", nargs=-1, required=True)
@pass_ctx
def member_remove(ctx: Context, list_address: str, addresses: tuple[str, ...]) -> None:
    """Remove members from LIST."""
    members = directory_edit.change_list_members(ctx.existing_root(), ctx.settings, list_address, remove=list(addresses))
    done(f"list {parse_address(list_address)} has {len(members)} members")


COMMANDS = [list_group]
