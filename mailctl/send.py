"""mailctl send: send a message read on stdin, with sendmail's common flags.

Works without a running server: local recipients are delivered at once, the others are
queued; a running server is told to send them now.
"""
from __future__ import annotations

import sys

import click

from engine.errors import InvalidInput, MailError
from engine.settings import message_size_limit

from .context import Context, pass_ctx
from .output import done, emit_json


def read_message(stream, ignore_dots: bool, limit: int) -> bytes:
    """stdin up to EOF; without -i a line holding only '.' ends the message (sendmail)."""
    if ignore_dots:
        data = stream.read(limit + 1)
    else:
        chunks = []
        size = 0
        for line in iter(stream.readline, b""):
            if line.rstrip(b"\r\n") == b".":
                break
            chunks.append(line)
            size += len(line)
            if size > limit:
                break
        data = b"".join(chunks)
    if len(data) > limit:
        raise InvalidInput(f"message larger than {limit} bytes; refused")
    return data


def every_account(directory, domains=()) -> list[str]:
    """The enabled accounts of the enabled domains (only those named, when any are)."""
    from engine.addresses import normalize_domain
    wanted = {normalize_domain(d) for d in domains}
    unknown = wanted - set(directory.domains)
    if unknown:
        raise InvalidInput(f"no domain {', '.join(sorted(unknown))}; see 'mailctl domain list'")
    out = [a.address for name, d in sorted(directory.domains.items()) if d.enabled and (not wanted or name in wanted)
           for a in d.accounts.values() if a.enabled]
    if not out:
        raise InvalidInput("no enabled account to send to")
    return sorted(out)


@click.command("send", context_settings={"ignore_unknown_options": False})
@click.argument("recipients", nargs=-1)
@click.option("-t", "extract", is_flag=True, help="Read recipients from To, Cc and Bcc (Bcc is removed).")
@click.option("-f", "sender", metavar="ADDRESS", help="Envelope sender ('' or '<>' for the null sender).")
@click.option("-F", "full_name", metavar="NAME", help="Accepted for compatibility (ignored).")
@click.option("-i", "ignore_dots", is_flag=True, help="A line with a single '.' does not end the message.")
@click.option("-o", "oflags", multiple=True, metavar="FLAG", help="-oi as -i; other -o flags are accepted and ignored.")
@click.option("--all-accounts", is_flag=True, help="Send it to every enabled account (a notice to all users).")
@click.option("--domain", "domains", multiple=True, metavar="DOMAIN",
              help="With --all-accounts: only this domain's accounts (repeat for several).")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def send(ctx: Context, recipients, extract, sender, full_name, ignore_dots, oflags, all_accounts, domains,
         as_json) -> None:
    """Send a message read on standard input to RECIPIENTS (or, with -t, its To/Cc/Bcc; or,
    with --all-accounts, every account)."""
    if domains and not all_accounts:
        raise click.UsageError("--domain goes with --all-accounts")
    if all_accounts:
        if recipients or extract:
            raise click.UsageError("--all-accounts takes no RECIPIENTS and no -t")
        recipients = every_account(ctx.directory(), domains)
    ignore_dots = ignore_dots or "i" in oflags
    if sender in ("<>",):
        sender = ""
    from engine.accept.local import send_message
    root, settings = ctx.existing_root(), ctx.settings
    limit = message_size_limit(settings)
    data = read_message(sys.stdin.buffer, ignore_dots, limit)
    prepared, outcome = send_message(root, settings, ctx.directory(), data, sender=sender,
                                     recipients=list(recipients), extract=extract)
    if as_json:
        emit_json({"sender": prepared.sender, "delivered": outcome.delivered, "queued": outcome.queue_id,
                   "external": outcome.external, "rejected": {k: str(v) for k, v in outcome.rejected.items()},
                   "warnings": prepared.warnings})
    else:
        parts = []
        if outcome.delivered:
            parts.append(f"delivered to {', '.join(outcome.delivered)}")
        if outcome.queue_id:
            parts.append(f"queued {outcome.queue_id} for {', '.join(outcome.external)}")
        if parts:
            done("; ".join(parts))
        for w in prepared.warnings:
            click.echo(f"mailctl: skipped {w}", err=True)
        for rcpt, why in outcome.rejected.items():
            click.echo(f"mailctl: {rcpt}: {why}", err=True)
    if outcome.rejected or prepared.warnings:
        if not outcome.delivered and not outcome.queue_id:
            raise MailError("message not sent to anyone")
        raise click.exceptions.Exit(1)


COMMANDS = [send]
