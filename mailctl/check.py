"""mailctl check: what the server's checks say about a message, without sending it."""
from __future__ import annotations

import click

from .context import Context, pass_ctx
from .output import emit_json


@click.group("check")
def check() -> None:
    """Run the server's inbound checks on a message."""


@check.command("message")
@click.argument("file", type=click.File("rb"))
@click.option("--ip", required=True, help="The client address the message came from.")
@click.option("--helo", default="", help="The name the client gave in HELO/EHLO.")
@click.option("--from", "sender", default="", help="The envelope sender (MAIL FROM; empty: the null sender).")
@click.option("--to", "recipients", multiple=True, help="A recipient (RCPT TO); repeat for several.")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def message(ctx: Context, file, ip, helo, sender, recipients, as_json) -> None:
    """SPF, DKIM, ARC and DMARC, the HELO and sender checks, the DNS block lists, the spam
    scanners' answers ([spam_scan]: rspamd, spamd), the spam score, the virus scanners'
    verdict ([antivirus]) and the blocked attachments ([attachments]) of FILE as if it came in on port 25 from IP: prints the Authentication-Results header the server would add, the verdict of
    each HELO and sender check ([helo_checks]), each score with its reason, the total with
    its verdict (inbox, junk or reject), the virus scan and the reply it would give. With
    --to, per recipient: where it resolves, the access lists, the HELO checks and block
    lists as they treat it, greylisting's verdict (no record is written), its domain's spam
    thresholds and its reply. DNS goes where the server's goes (queue.nameservers)."""
    import ipaddress

    from engine.accept import spamreport
    from engine.accept.explain import explain_message
    from engine.errors import InvalidInput
    from engine.settings import message_size_limit
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidInput(f"--ip: {ip!r} is not an IP address") from None
    settings = ctx.settings
    data = file.read(message_size_limit(settings) + 1)
    if len(data) > message_size_limit(settings):
        raise InvalidInput("message larger than limits.max_message_size_mb")
    found = explain_message(ctx.existing_root(), settings, ctx.directory(), data, ip=ip, helo=helo, sender=sender,
                            recipients=recipients)
    if as_json:
        emit_json(found)
        return
    access = found["access"]
    click.echo(found["authentication_results"])
    click.echo("access: " + ", ".join(f"{k}={v}" for k, v in access.items() if v not in (None, True) or k == "checked_as"))
    for c in found["helo_checks"]:
        click.echo(_check_line(c))
    for line in found["spam_scanners"]:
        click.echo(f"spam: {line}")
    for line in spamreport.lines(found["spam"], settings):
        click.echo(line)
    click.echo(f"Virus scan: {found['virus_scan']}")
    click.echo(f"Attachments: {found['attachments']}")
    for r in found["recipients"]:
        _echo_recipient(r, settings)
    click.echo(found["reply"])


def _check_line(c: dict, indent: str = "") -> str:
    return (f"{indent}{c['check']}: {c['result']}" + (f" {c['points']:+g}" if c["result"] == "score" else "") +
            (f": {c['why']}" if c["why"] else ""))


def _echo_recipient(r: dict, settings) -> None:
    from engine.accept import spamreport
    click.echo(f"to <{r['address']}>:" + (f" resolves to {r['resolves_to']}" if r["resolves_to"] else ""))
    if r["access"] and r["access"]["refused"]:
        click.echo(f"  access: refused: {r['access']['refused']}")
    for c in r["helo_checks"]:
        click.echo(_check_line(c, "  "))
    if r["greylisting"]:
        click.echo(f"  greylisting: {r['greylisting']['verdict']} ({r['greylisting']['why']})")
    if r["thresholds"]:
        t = r["thresholds"]
        click.echo("  spam thresholds: " + (f"mark {t['mark']:g}, reject {t['reject'] or 'never':}" if t["scoring"]
                                             else "scoring off"))
    if r["spam"]:
        for line in spamreport.lines(r["spam"], settings)[-1:]:
            click.echo("  " + line)
    for mailbox, outcome in (r.get("sieve") or {}).items():
        did = [f"{a['action']} {a['argument']}".rstrip() for a in outcome["actions"]]
        did += ["keep (implicit)"] if outcome["implicit_keep"] else []
        click.echo(f"  sieve ({mailbox}): " + (f"error: {outcome['error']}: INBOX" if outcome["error"] else "; ".join(did)))
    click.echo(f"  reply: {r['reply']}")


COMMANDS = [check]
