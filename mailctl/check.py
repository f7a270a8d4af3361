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
    """SPF, DKIM, ARC and DMARC of FILE as if it came in on port 25 from IP, and the virus
    scanners' verdict ([antivirus]): prints the Authentication-Results header the server
    would add, the virus scan and the reply it would give. DNS goes where the server's goes
    (queue.nameservers)."""
    import ipaddress

    from engine.accept import antivirus, authcheck
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
    header, reply = authcheck.check_message(settings, data, ip=ip, helo=helo, sender=sender)
    virus, virus_reply = antivirus.check(settings, data, ctx.root if ctx.root.exists() else None)
    if virus_reply and reply.startswith("250"):        # the scan runs after these checks
        reply = virus_reply
    if as_json:
        emit_json({"authentication_results": header.decode(), "virus_scan": virus, "reply": reply})
        return
    click.echo(header.decode())
    click.echo(f"Virus scan: {virus}")
    click.echo(reply)


COMMANDS = [check]
