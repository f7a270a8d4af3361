"""mailctl deliver: put one message into a local mailbox through the directory."""
from __future__ import annotations

import sys

import click

from engine.errors import InvalidInput, MailError

from .context import Context, pass_ctx
from .output import done, emit_json

MAX_INPUT = 1 << 30


@click.command("deliver")
@click.argument("address")
@click.argument("file", required=False, type=click.File("rb"))
@click.option("--from", "sender", default="", metavar="ADDRESS", help="Envelope sender (Return-Path).")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def deliver(ctx: Context, address: str, file, sender: str, as_json: bool) -> None:
    """Deliver a message (FILE or standard input) to a local ADDRESS: aliases, lists and
    forwards are followed; external targets are queued."""
    from engine import delivery
    from engine.addresses import parse_address
    # it becomes the Return-Path header: an address, or the null sender, never a line break
    sender = "" if sender in ("", "<>") else str(parse_address(sender))
    root, settings = ctx.existing_root(), ctx.settings
    directory = ctx.directory()
    res = directory.resolve(address, sender or None)
    if not res.local_domain and res.ok:
        raise InvalidInput(f"{address}: not a local domain; deliver only takes local addresses (use 'mailctl send')")
    if not res.ok:
        raise MailError(f"{address}: {res.rejection}")
    data = (file or sys.stdin.buffer).read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        raise InvalidInput("message larger than 1 GiB; refused")
    if not data.strip():
        raise InvalidInput("empty message; nothing delivered")
    outcome = delivery.deliver(root, settings, directory, sender, [address], data, source="deliver")
    if outcome.rejected and not outcome.delivered and not outcome.queue_id:
        rcpt, why = next(iter(outcome.rejected.items()))
        raise MailError(f"{rcpt}: {why}")
    if as_json:
        emit_json({"delivered": outcome.delivered, "queued": outcome.queue_id, "external": outcome.external,
                   "rejected": {k: str(v) for k, v in outcome.rejected.items()}})
    else:
        parts = [f"delivered to {', '.join(outcome.delivered)}"] if outcome.delivered else []
        if outcome.queue_id:
            parts.append(f"queued {outcome.queue_id} for {', '.join(outcome.external)}")
        for rcpt, why in outcome.rejected.items():
            parts.append(f"{rcpt}: {why}")
        done("; ".join(parts))


COMMANDS = [deliver]
