"""mailctl domain: the domains served here."""
from __future__ import annotations

import click

from engine import directory_edit
from engine.addresses import normalize_domain
from engine.errors import NotFound

from .context import Context, confirm, pass_ctx
from .output import done, emit_json, fields, table

json_option = click.option("--json", "as_json", is_flag=True, help="Output as JSON.")


@click.group("domain")
def domain() -> None:
    """Add, list, show, remove, enable and disable domains; domain aliases."""


@domain.command("add")
@click.argument("name")
@pass_ctx
def add(ctx: Context, name: str) -> None:
    """Add a domain (domains/NAME.toml)."""
    done(f"domain {directory_edit.add_domain(ctx.existing_root(), ctx.settings, name)} added")


@domain.command("list")
@json_option
@pass_ctx
def list_(ctx: Context, as_json: bool) -> None:
    """List domains with their counts."""
    rows = [d.public() for d in sorted(ctx.directory().domains.values(), key=lambda d: d.name)]
    if as_json:
        emit_json(rows)
    else:
        table(rows, [("domain", "Domain"), ("enabled", "Enabled"), ("domain_aliases", "Domain aliases"),
                     ("accounts", "Accounts"), ("address_aliases", "Address aliases"), ("lists", "Lists")])


def _get(ctx: Context, name: str):
    d = ctx.directory().domain(normalize_domain(name))
    if d is None:
        raise NotFound(f"domain {normalize_domain(name)} does not exist; see 'mailctl domain list'")
    return d


@domain.command("show")
@click.argument("name")
@json_option
@pass_ctx
def show(ctx: Context, name: str, as_json: bool) -> None:
    """Show a domain's settings and counts."""
    data = _get(ctx, name).public()
    emit_json(data) if as_json else fields(data)


@domain.command("remove")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Delete the mailboxes instead of moving them to removed/.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def remove(ctx: Context, name: str, purge: bool, yes: bool) -> None:
    """Remove a domain with all its accounts; mailboxes move to removed/ unless --purge."""
    d = _get(ctx, name)
    what = "DELETE all mail of" if purge else "remove"
    confirm(yes, f"{what} domain {d.name} with {len(d.accounts)} accounts?")
    where = directory_edit.remove_domain(ctx.existing_root(), ctx.settings, d.name, purge=purge)
    done(f"domain {d.name} removed" + (f"; mailboxes kept in {where}" if where else ""))


def _set_enabled(enabled: bool):
    @click.argument("name")
    @pass_ctx
    def command(ctx: Context, name: str) -> None:
        directory_edit.set_domain(ctx.existing_root(), ctx.settings, name, enabled=enabled)
        done(f"domain {normalize_domain(name)} {'enabled' if enabled else 'disabled'}")
    return command


domain.command("enable", help="Accept mail for a domain again.")(_set_enabled(True))
domain.command("disable", help="Refuse mail for a domain (550 Domain Has Been Disabled); nothing is deleted.")(_set_enabled(False))


@domain.command("set")
@click.argument("name")
@click.option("--catch-all", metavar="ADDRESS", help="Address for unknown local parts ('' to clear).")
@click.option("--max-message-size", "max_size", type=click.FloatRange(min=0), metavar="MB", help="Largest message for this domain (0 = server limit).")
@click.option("--max-accounts", type=click.IntRange(min=0), help="Most accounts (0 = no limit).")
@click.option("--default-quota", type=click.IntRange(min=0), metavar="MB", help="Quota of new accounts (0 = server default).")
@click.option("--greylisting/--no-greylisting", default=None, help="Greylist mail to this domain when greylist.enabled is on (the default) or never.")
@click.option("--spam-scoring/--no-spam-scoring", default=None, help="Weigh the spam score of mail to this domain (the default) or never.")
@click.option("--spam-mark", type=click.FloatRange(min=0.1, max=1000), metavar="SCORE", help="Its own spam.mark_score (Junk and X-Spam headers).")
@click.option("--spam-reject", type=click.FloatRange(min=0, max=1000), metavar="SCORE", help="Its own spam.reject_score (550 5.7.1; 0 = never).")
@click.option("--antivirus/--no-antivirus", default=None, help="Scan mail to this domain for viruses when antivirus.enabled is on (the default) or never.")
@click.option("--spam-scan/--no-spam-scan", default=None, help="Ask rspamd / spamd about mail to this domain when spam_scan.enabled is on (the default) or never.")
@click.option("--attachment-blocking/--no-attachment-blocking", default=None, help="Block attachments in mail to this domain when attachments.enabled is on (the default) or never.")
@click.option("--attachment-action", type=click.Choice(["replace", "refuse"]), help="Its own attachments.action.")
@click.option("--mirror", metavar="ADDRESS", help="A copy of every message to or from the domain goes to "
              "ADDRESS ('' to stop).")
@click.option("--junk-folder", metavar="FOLDER", help="Its own spam.junk_folder (its spam is filed there, and what "
              "users move into or out of it is learned).")
@pass_ctx
def set_(ctx: Context, name: str, catch_all, max_size, max_accounts, default_quota, greylisting, spam_scoring,
         spam_mark, spam_reject, antivirus, spam_scan, attachment_blocking, attachment_action, mirror, junk_folder) -> None:
    """Change a domain's settings."""
    values = {k: v for k, v in {"catch_all": catch_all, "max_message_size_mb": max_size,
                                "max_accounts": max_accounts, "default_quota_mb": default_quota,
                                "greylisting": greylisting, "spam_scoring": spam_scoring,
                                "spam_mark_score": spam_mark, "spam_reject_score": spam_reject,
                                "antivirus": antivirus, "spam_scan": spam_scan, "attachment_blocking": attachment_blocking,
                                "attachment_action": attachment_action, "junk_folder": junk_folder, "mirror": mirror}.items()
              if v is not None}
    if not values:
        raise click.UsageError("give at least one option to change")
    directory_edit.set_domain(ctx.existing_root(), ctx.settings, name, **values)
    done(f"domain {normalize_domain(name)} updated: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))


@domain.group("alias")
def alias() -> None:
    """Other names of a domain (example.org for example.com)."""


@alias.command("add")
@click.argument("domain_name", metavar="DOMAIN")
@click.argument("alias_name", metavar="ALIAS")
@pass_ctx
def alias_add(ctx: Context, domain_name: str, alias_name: str) -> None:
    """Make ALIAS another name of DOMAIN."""
    directory_edit.add_domain_alias(ctx.existing_root(), ctx.settings, domain_name, alias_name)
    done(f"{normalize_domain(alias_name)} is now an alias of {normalize_domain(domain_name)}")


@alias.command("remove")
@click.argument("domain_name", metavar="DOMAIN")
@click.argument("alias_name", metavar="ALIAS")
@pass_ctx
def alias_remove(ctx: Context, domain_name: str, alias_name: str) -> None:
    """Remove a domain alias."""
    directory_edit.remove_domain_alias(ctx.existing_root(), ctx.settings, domain_name, alias_name)
    done(f"{normalize_domain(alias_name)} is no longer an alias of {normalize_domain(domain_name)}")


COMMANDS = [domain]
