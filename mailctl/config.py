"""mailctl config: check and show the configuration."""
from __future__ import annotations

import click

from engine import settings as settings_mod
from engine.directory import Directory
from engine.errors import ConfigError, MailError

from .context import Context, pass_ctx
from .output import emit_json, error


@click.group("config")
def config() -> None:
    """Check and show mailctl.toml and the domain files."""


def check_root(root) -> tuple[list[str], dict]:
    """Every problem in mailctl.toml and domains/*.toml, and a summary."""
    problems: list[str] = []
    settings = None
    try:
        settings = settings_mod.load(root.config_file, "mailctl.toml")
    except ConfigError as e:
        problems.extend(e.problems)
    if settings is not None:
        from engine.outbound import routes
        problems.extend(routes.check(root))
    directory, found = Directory.load_with_problems(root, settings)
    problems.extend(found)
    summary = {"warnings": login_warnings(directory), "domains": len(directory.domains),
               "accounts": sum(len(d.accounts) for d in directory.domains.values()),
               "aliases": sum(len(d.alias_map) for d in directory.domains.values()),
               "lists": sum(len(d.lists) for d in directory.domains.values())}
    return problems, summary


def login_warnings(directory: Directory) -> list[str]:
    """Accounts that cannot log in. A warning, not a problem: an account without a
    password is a legitimate receive-only mailbox, and a reload must not keep an old
    password in force because its line was removed."""
    from engine.passwords import login_problem
    out = []
    for account in directory.all_accounts():
        why = login_problem(account.password)
        if why:
            out.append(f"domains/{account.domain}.toml: account {account.address} cannot log in: {why} "
                       f"(run mailctl account passwd {account.address})")
    return out


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def check(ctx: Context, as_json: bool) -> None:
    """Validate every file; print each problem as file:line: key: problem (exit 1 if any).

    Accounts that cannot log in (no password, or a password that is not a hash) are
    printed as warnings; they alone do not fail the check (receive-only accounts)."""
    problems, summary = check_root(ctx.existing_root())
    if as_json:
        emit_json({"ok": not problems, "problems": problems, **summary})
    else:
        for p in problems:
            error(p)
        for w in summary["warnings"]:
            error(f"warning: {w}")
        if not problems:
            click.echo(f"configuration ok: {summary['domains']} domains, {summary['accounts']} accounts, "
                       f"{summary['aliases']} aliases, {summary['lists']} lists")
    if problems:
        raise click.exceptions.Exit(1)


@config.command("show")
@click.argument("key", required=False)
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def show(ctx: Context, key: str | None, as_json: bool) -> None:
    """Show the effective settings (defaults included), or one KEY like limits.max_recipients."""
    data = settings_mod.as_dict(ctx.settings)
    if key:
        try:
            value = settings_mod.get(ctx.settings, key)
        except KeyError:
            raise MailError(f"unknown setting {key!r}; see 'mailctl config show' for all keys") from None
        value = settings_mod.as_dict(value)
        if as_json:
            emit_json(value)
        elif isinstance(value, dict):
            click.echo(_flatten_toml(value, key))
        else:
            click.echo(settings_mod._toml_value(value))
        return
    if as_json:
        emit_json(data)
    else:
        click.echo(_flatten_toml(data, ""))


def _flatten_toml(data: dict, prefix: str) -> str:
    lines = []
    for k, v in data.items():
        dotted = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()) or \
                (isinstance(v, dict) and any(isinstance(x, dict) for x in v.values())):
            lines.append(_flatten_toml(v, dotted))
        else:
            lines.append(f"{dotted} = {settings_mod._toml_value(v)}")
    return "\n".join(lines)


COMMANDS = [config]
