"""mailctl account: mailboxes and their logins."""
from __future__ import annotations

import click

from engine import directory_edit, passwords
from engine.addresses import normalize_domain, parse_address
from engine.errors import NotFound

from . import sendlimits_cli
from .context import Context, confirm, pass_ctx, read_secret
from .output import done, emit_json, fields, table

json_option = click.option("--json", "as_json", is_flag=True, help="Output as JSON.")


def password_options(f):
    f = click.option("--password-file", type=click.Path(dir_okay=False), metavar="FILE",
                     help="Read the password from the first line of FILE.")(f)
    f = click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")(f)
    return f


@click.group("account")
def account() -> None:
    """Add, list, show, remove accounts; passwords, quota, enable and disable; sending limits."""


@account.command("add")
@click.argument("address")
@click.option("--name", default="", help="Display name.")
@click.option("--quota", type=click.IntRange(min=0), metavar="MB", help="Quota in MB (0 = unlimited).")
@password_options
@pass_ctx
def add(ctx: Context, address: str, name: str, quota: int | None, password_stdin: bool, password_file: str | None) -> None:
    """Add an account and create its Maildir with the default folders."""
    root, settings = ctx.existing_root(), ctx.settings
    a = parse_address(address)   # a bad address fails before we ask for a password
    directory_edit.primary_domain(root, settings, a.domain)     # and so does a domain not served here
    hashed = passwords.hash_password(read_secret(password_stdin, password_file))
    done(f"account {directory_edit.add_account(root, settings, address, hashed, name, quota)} added")


@account.command("list")
@click.argument("domain", required=False)
@json_option
@pass_ctx
def list_(ctx: Context, domain: str | None, as_json: bool) -> None:
    """List accounts, of one DOMAIN or all."""
    directory = ctx.directory()
    if domain:
        d = directory.domain(normalize_domain(domain))
        if d is None:
            raise NotFound(f"domain {normalize_domain(domain)} does not exist; see 'mailctl domain list'")
        accounts = d.accounts.values()
    else:
        accounts = directory.all_accounts()
    rows = [a.public() for a in sorted(accounts, key=lambda a: (a.domain, a.local))]
    if as_json:
        emit_json(rows)
    else:
        table(rows, [("address", "Address"), ("name", "Name"), ("quota_mb", "Quota MB"),
                     ("enabled", "Enabled"), ("forward", "Forward")])


def _get(ctx: Context, address: str):
    account_ = ctx.directory().account(str(parse_address(address)))
    if account_ is None:
        raise NotFound(f"account {parse_address(address)} does not exist; see 'mailctl account list'")
    return account_


@account.command("show")
@click.argument("address")
@json_option
@pass_ctx
def show(ctx: Context, address: str, as_json: bool) -> None:
    """Show an account, with its mailbox usage and its sending: messages and distinct
    external recipients in the last hour and day against its limits, and whether a daily
    limit blocked it (see 'mailctl account limits', 'mailctl account unblock')."""
    from engine.maildir import Maildir
    acc = _get(ctx, address)
    data = acc.public()
    box = Maildir.for_account(ctx.existing_root(), acc.domain, acc.local)
    used, count = box.quota_usage() if box.exists() else (0, 0)
    data.update({"used_bytes": used, "messages": count, "mailbox": f"mail/{acc.domain}/{acc.local}"})
    sending = sendlimits_cli.sending(ctx, acc)
    if as_json:
        emit_json({**data, "sending": sending})
    else:
        fields({**data, **sendlimits_cli.shown(sending)})


@account.command("remove")
@click.argument("address")
@click.option("--purge", is_flag=True, help="Delete the mailbox instead of moving it to removed/.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (with --purge).")
@pass_ctx
def remove(ctx: Context, address: str, purge: bool, yes: bool) -> None:
    """Remove an account. Its mailbox moves to removed/ (nothing is lost by a typo) unless --purge."""
    acc = _get(ctx, address)
    if purge:
        confirm(yes, f"DELETE account {acc.address} and all its mail?")
    where = directory_edit.remove_account(ctx.existing_root(), ctx.settings, acc.address, purge=purge)
    done(f"account {acc.address} removed" + (f"; mailbox kept in {where}" if where else ""))


@account.command("passwd")
@click.argument("address")
@password_options
@pass_ctx
def passwd(ctx: Context, address: str, password_stdin: bool, password_file: str | None) -> None:
    """Set an account's password."""
    acc = _get(ctx, address)
    hashed = passwords.hash_password(read_secret(password_stdin, password_file, "New password"))
    directory_edit.set_account(ctx.existing_root(), ctx.settings, acc.address, password=hashed)
    done(f"password of {acc.address} changed")


def _set_enabled(enabled: bool):
    @click.argument("address")
    @pass_ctx
    def command(ctx: Context, address: str) -> None:
        acc = _get(ctx, address)
        directory_edit.set_account(ctx.existing_root(), ctx.settings, acc.address, enabled=enabled)
        done(f"account {acc.address} {'enabled' if enabled else 'disabled'}")
    return command


account.command("enable", help="Let an account receive mail and log in again.")(_set_enabled(True))
account.command("disable", help="Refuse mail (550 Account Is Not Active) and logins; nothing is deleted.")(_set_enabled(False))


@account.command("quota")
@click.argument("address")
@click.argument("megabytes", type=click.IntRange(min=0), metavar="MB")
@pass_ctx
def quota(ctx: Context, address: str, megabytes: int) -> None:
    """Set an account's quota in MB (0 = unlimited)."""
    acc = _get(ctx, address)
    directory_edit.set_account(ctx.existing_root(), ctx.settings, acc.address, quota_mb=megabytes)
    done(f"quota of {acc.address} set to {megabytes} MB" if megabytes else f"quota of {acc.address} removed")


@account.command("name")
@click.argument("address")
@click.argument("name")
@pass_ctx
def set_name(ctx: Context, address: str, name: str) -> None:
    """Set an account's display name."""
    acc = _get(ctx, address)
    directory_edit.set_account(ctx.existing_root(), ctx.settings, acc.address, name=name)
    done(f"name of {acc.address} set")


@account.command("spam-filter")
@click.argument("address")
@click.argument("state", type=click.Choice(["on", "off"]))
@pass_ctx
def spam_filter(ctx: Context, address: str, state: str) -> None:
    """Let spam to an account go to Junk or be refused (on, the default), or opt it out (off:
    everything lands in INBOX, still scanned for viruses)."""
    acc = _get(ctx, address)
    directory_edit.set_account(ctx.existing_root(), ctx.settings, acc.address, spam_filter=None if state == "on" else False)
    done(f"spam filtering of {acc.address} {state}")


@account.command("unblock")
@click.argument("address")
@pass_ctx
def unblock(ctx: Context, address: str) -> None:
    """Let an account blocked by a daily sending limit send again; its sending counts
    start afresh (a running server sees it at once)."""
    done(sendlimits_cli.unblock(ctx, _get(ctx, address)))


@account.command("limits")
@click.argument("address")
@sendlimits_cli.limit_options
@json_option
@pass_ctx
def limits(ctx: Context, address: str, as_json: bool, **given) -> None:
    """Show or set an account's sending limits: messages and distinct recipients outside
    our domains per hour and per day. Past one, such a recipient gets 451 4.7.1; past a
    daily one the account is blocked until 'mailctl account unblock' (or
    send_limits.unblock_after_hours). Each a number (0 = no limit) or 'default' (the
    [send_limits] value of mailctl.toml); without options it shows them."""
    sendlimits_cli.show_or_set(ctx, _get(ctx, address), given, as_json)


COMMANDS = [account]
