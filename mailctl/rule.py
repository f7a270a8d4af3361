"""mailctl rule: hMailServer-style rules of an account (or of the whole server, --global),
written as Sieve beside the user's own (engine/sieve/rules.py): add, list, remove, test."""
from __future__ import annotations

import click

from engine import mailbox_admin
from engine.addresses import parse_address
from engine.errors import InvalidInput
from engine.sieve import rules as rulesmod

from .context import Context, pass_ctx
from .output import done, emit_json


def _ruleset(ctx: Context, address: str | None, global_: bool) -> tuple[rulesmod.RuleSet, str]:
    if global_ == bool(address):
        raise click.UsageError("give an ADDRESS or --global (one of them)")
    if global_:
        return rulesmod.RuleSet(root_path=ctx.existing_root().path), "the server"
    address = str(parse_address(address))
    md = mailbox_admin.open_mailbox(ctx.existing_root(), ctx.directory(), address)
    return rulesmod.RuleSet(home=md.path), address


@click.group("rule")
def rule() -> None:
    """Mail rules (if ... then ...), written as Sieve beside hand-written scripts."""


@rule.command("add")
@click.argument("address", required=False)
@click.option("--global", "global_", is_flag=True, help="A rule for every mailbox (before each one's own).")
@click.option("--if", "conditions", multiple=True, metavar="COND",
              help="FIELD OPERATOR VALUE: from|to|cc|subject|body|size|recipient|header:NAME, "
                   "[not] is|contains|matches|regex|over|under, e.g. 'subject contains \"invoice\"'.")
@click.option("--any", "any_", is_flag=True, help="Any condition is enough (default: all of them).")
@click.option("--then", "actions", multiple=True, metavar="ACTION",
              help="move FOLDER | copy FOLDER | delete | forward ADDRESS | forward-only ADDRESS | flag FLAG | "
                   "reply TEXT | set-header NAME VALUE | stop; FOLDER may hold %YEAR%, %MONTH%, %DAY%.")
@pass_ctx
def add(ctx: Context, address, global_: bool, conditions, any_: bool, actions) -> None:
    """Add a rule at the end of ADDRESS's rules (or the server's, --global)."""
    ruleset, who = _ruleset(ctx, address, global_)
    n = ruleset.add(list(conditions), list(actions), any_)
    done(f"rule {n} added for {who}")


@rule.command("list")
@click.argument("address", required=False)
@click.option("--global", "global_", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def list_(ctx: Context, address, global_: bool, as_json: bool) -> None:
    """List the rules, numbered in the order they run."""
    ruleset, who = _ruleset(ctx, address, global_)
    rules = ruleset.list()
    if as_json:
        emit_json([{"number": n, **r} for n, r in enumerate(rules, 1)])
        return
    if not rules:
        click.echo(f"{who}: no rules")
    for n, r in enumerate(rules, 1):
        click.echo(f"{n}. {rulesmod.describe(r)}")


@rule.command("remove")
@click.argument("address", required=False)
@click.argument("number", type=int, required=False)
@click.option("--global", "global_", is_flag=True)
@pass_ctx
def remove(ctx: Context, address, number, global_: bool) -> None:
    """Remove rule NUMBER (see 'rule list')."""
    if global_ and number is None and address is not None and address.isdigit():
        address, number = None, int(address)
    if number is None:
        raise click.UsageError("give the rule's NUMBER")
    ruleset, who = _ruleset(ctx, address, global_)
    gone = ruleset.remove(number)
    done(f"rule {number} of {who} removed: {rulesmod.describe(gone)}")


@rule.command("test")
@click.argument("address")
@click.argument("file", type=click.File("rb"))
@click.option("--sender", default=None, help="The envelope sender (default: the message's Return-Path or From).")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def test(ctx: Context, address: str, file, sender, as_json: bool) -> None:
    """What ADDRESS's scripts (global rules, its own, hand-written too) do with the message in FILE."""
    from engine.accept.sievetrial import try_message
    address = str(parse_address(address))
    md = mailbox_admin.open_mailbox(ctx.existing_root(), ctx.directory(), address)
    raw = file.read(64 * 1024 * 1024)
    if not raw:
        raise InvalidInput("the message file is empty")
    from engine.accept.sieving import spamtest_top
    outcome = try_message(md, ctx.existing_root().path, address, raw, sender, spamtest_top(ctx.settings))
    if as_json:
        emit_json(outcome)
        return
    if outcome["error"]:
        click.echo(f"script error: {outcome['error']} (the message would go to INBOX)")
    for a in outcome["actions"]:
        click.echo(f"{a['action']} {a['argument']}".rstrip())
    if outcome["implicit_keep"]:
        click.echo("keep (implicit: a copy in INBOX)")


COMMANDS = [rule]
