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
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def message(ctx: Context, file, ip, helo, sender, as_json) -> None:
    """SPF, DKIM, ARC and DMARC, the HELO and sender checks, the DNS block lists, the spam
    score, the virus scanners' verdict ([antivirus]) and the blocked attachments
    ([attachments]) of FILE as if it came in on port 25 from IP: prints the Authentication-Results header the server would add, the verdict of
    each HELO and sender check ([helo_checks]), each score with its reason, the total with
    its verdict (inbox, junk or reject), the virus scan and the reply it would give. DNS goes
    where the server's goes (queue.nameservers)."""
    import ipaddress

    from engine.accept import Score, antivirus, attachments, authcheck, helochecks, spamreport
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
    from engine.access.explain import explain
    from engine.smtp import replies
    from engine.smtp.data import header_block
    access = explain(ctx.existing_root(), settings, ip, sender, header_block(data, 0))    # access lists
    ip = access["checked_as"]          # an incoming relay's client
    header, reply = authcheck.check_message(settings, data, ip=ip, helo=helo, sender=sender)
    client = helochecks.explain(settings, ctx.directory(), ip=ip, helo=helo, sender=sender)
    scores = [Score(c["points"], f"{c['check']}: {c['why']}") for c in client if c["result"] == "score"]
    spam = spamreport.check_message(settings, data, ip=ip, helo=helo, sender=sender, scores=scores)
    if reply == "250 accepted" or (reply.startswith("250") and spam["verdict"] == spamreport.REJECT):
        reply = spam["reply"]           # DMARC's refusal comes first; the score's after it
    virus, virus_reply = antivirus.check(settings, data, ctx.root if ctx.root.exists() else None)
    if virus_reply and reply.startswith("250"):        # the scan runs after these checks
        reply = virus_reply
    blocked, blocked_reply = attachments.check(settings, data)      # attachment blocking runs after it
    if blocked_reply and reply.startswith("250"):
        reply = blocked_reply
    reply = next((c["reply"] for c in client if c["reply"]), reply)      # RCPT-time refusals come first
    if access["connect_refused"] or access["sender_blocked"]:            # and the access lists before them
        reply = replies.ACCESS_DENIED if access["connect_refused"] else replies.SENDER_BLOCKED
    if as_json:
        emit_json({"authentication_results": header.decode(), "access": access, "helo_checks": client,
                   "spam": spam, "virus_scan": virus, "attachments": blocked, "reply": reply})
        return
    click.echo(header.decode())
    click.echo("access: " + ", ".join(f"{k}={v}" for k, v in access.items() if v not in (None, True) or k == "checked_as"))
    for c in client:
        click.echo(f"{c['check']}: {c['result']}" + (f" {c['points']:+g}" if c["result"] == "score" else "") +
                   (f": {c['why']}" if c["why"] else ""))
    for line in spamreport.lines(spam, settings):
        click.echo(line)
    click.echo(f"Virus scan: {virus}")
    click.echo(f"Attachments: {blocked}")
    click.echo(reply)


COMMANDS = [check]
