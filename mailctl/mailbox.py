"""mailctl mailbox: folders of one account, with counts; create, rename, delete; expunge; resync;
share (rights of others on a folder, RFC 4314) and acl (who has which)."""
from __future__ import annotations

import click

from engine import mailbox_admin
from engine.acl import admin as acl_admin
from engine.addresses import parse_address

from .context import Context, confirm, pass_ctx
from .output import done, emit_json, table

json_option = click.option("--json", "as_json", is_flag=True, help="Output as JSON.")


@click.group("mailbox")
def mailbox() -> None:
    """Folders of an account: list with counts, create, rename, delete, expunge, resync, share."""


def _open(ctx: Context, address: str):
    return mailbox_admin.open_mailbox(ctx.existing_root(), ctx.directory(), str(parse_address(address)))


@mailbox.command("list")
@click.argument("address")
@json_option
@pass_ctx
def list_(ctx: Context, address: str, as_json: bool) -> None:
    """List ADDRESS's folders with message counts, unseen counts and sizes."""
    rows = [s.public() for s in mailbox_admin.summary(_open(ctx, address))]
    if as_json:
        emit_json(rows)
    else:
        table(rows, [("folder", "Folder"), ("messages", "Messages"), ("unseen", "Unseen"),
                     ("size", "Bytes"), ("special_use", "Special use"), ("subscribed", "Subscribed")])


@mailbox.command("create")
@click.argument("address")
@click.argument("folder")
@pass_ctx
def create(ctx: Context, address: str, folder: str) -> None:
    """Create FOLDER (use / for hierarchy, e.g. Projects/2024) and subscribe it."""
    md = _open(ctx, address)
    f = md.create_folder(folder)
    md.subscribe(f.name)
    done(f"folder {f.name} created for {parse_address(address)}")


@mailbox.command("rename")
@click.argument("address")
@click.argument("folder")
@click.argument("new_name")
@pass_ctx
def rename(ctx: Context, address: str, folder: str, new_name: str) -> None:
    """Rename FOLDER (and its subfolders) to NEW_NAME.

    Renaming INBOX moves its messages into NEW_NAME and leaves INBOX empty (as IMAP RENAME does)."""
    _open(ctx, address).rename_folder(folder, new_name)
    done(f"folder {folder} renamed to {new_name}")


@mailbox.command("delete")
@click.argument("address")
@click.argument("folder")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def delete(ctx: Context, address: str, folder: str, yes: bool) -> None:
    """Delete FOLDER and every message in it."""
    md = _open(ctx, address)
    md.folder(folder)  # fails clearly when it does not exist, before asking
    confirm(yes, f"Delete folder {folder} of {parse_address(address)} with all its messages?")
    md.delete_folder(folder)
    done(f"folder {folder} deleted")


@mailbox.command("expunge")
@click.argument("address")
@click.option("--folder", "folder", help="Only this folder (default: all).")
@click.option("--older-than", "older_than", type=click.FloatRange(min=0), metavar="DAYS",
              help="Remove every message received more than DAYS ago (not only \\Deleted ones).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def expunge(ctx: Context, address: str, folder: str | None, older_than: float | None, yes: bool,
            as_json: bool) -> None:
    """Remove messages flagged \\Deleted; with --older-than, every message older than DAYS."""
    md = _open(ctx, address)
    if folder:
        md.folder(folder)
    if older_than is not None:
        confirm(yes, f"Remove every message older than {older_than:g} days from "
                     f"{folder or 'all folders'} of {parse_address(address)}?")
    n = mailbox_admin.expunge(md, folder, older_than, deleted_only=older_than is None)
    if as_json:
        emit_json({"expunged": n})
    else:
        done(f"{n} message{'s' if n != 1 else ''} expunged")


@mailbox.command("resync")
@click.argument("address")
@pass_ctx
def resync(ctx: Context, address: str) -> None:
    """Rebuild UID lists (keeping known UIDs) and the quota count from the files."""
    _open(ctx, address).resync()
    done(f"mailbox of {parse_address(address)} resynchronised")


@mailbox.command("share")
@click.argument("address")
@click.argument("folder")
@click.argument("who")
@click.argument("rights")
@pass_ctx
def share(ctx: Context, address: str, folder: str, who: str, rights: str) -> None:
    """Give WHO (an address, 'anyone' or 'authenticated') RIGHTS on ADDRESS's FOLDER, which
    they then see as Shared/ADDRESS/FOLDER. RIGHTS: RFC 4314 letters (lr to read,
    lrswite to work in it), +letters / -letters to add or take away, or none
    (give -letters after --, e.g. `-- -w`)."""
    owner = str(parse_address(address))
    entry = acl_admin.parse_who(ctx.directory(), who)
    mode, letters = acl_admin.parse_change(rights)
    rows = acl_admin.share(ctx.existing_root(), _open(ctx, address), owner, folder, entry, mode, letters)
    now = next((r["rights"] for r in rows if r["who"] == entry.identifier()), "no rights")
    done(f"{who} on {folder} of {owner}: {now}")


@mailbox.command("acl")
@click.argument("address")
@click.argument("folder")
@json_option
@pass_ctx
def acl(ctx: Context, address: str, folder: str, as_json: bool) -> None:
    """Show who has which rights on ADDRESS's FOLDER (its dovecot-acl)."""
    rows = acl_admin.rows(_open(ctx, address).folder(folder).path)
    if as_json:
        emit_json(rows)
    else:
        table(rows, [("who", "Who"), ("rights", "Rights")])


COMMANDS = [mailbox]
