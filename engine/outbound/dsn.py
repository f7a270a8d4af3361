"""Delivery status notifications (RFC 3464, 3461 §6, 3462): bounces and 'delayed' notices.

A DSN is multipart/report; report-type=delivery-status with three parts: a text for
people, the machine-readable message/delivery-status, and the original headers
(text/rfc822-headers). It is sent with the null sender, so it is never bounced itself.
"""
from __future__ import annotations

import email.utils
import secrets
import time

from ..directory import administrator
from ..queue import Envelope, Recipient

MAX_HEADERS = 64 * 1024


def _clean(text: str, limit: int = 900) -> str:
    """One line of printable ASCII (header fields must not be split or smuggled)."""
    text = " ".join(str(text).split())
    text = text.encode("ascii", "replace").decode("ascii")
    return text[:limit]


def original_headers(data: bytes) -> bytes:
    end = data.find(b"\n\n")
    crlf = data.find(b"\r\n\r\n")
    if crlf != -1 and (end == -1 or crlf < end):
        end = crlf
    head = data if end == -1 else data[:end]
    head = head[:MAX_HEADERS].replace(b"\r\n", b"\n")
    return head.rstrip(b"\n") + b"\n"


def _date(ts: float) -> str:
    return email.utils.formatdate(ts, localtime=False)


def build(env: Envelope, recipients: list[Recipient], action: str, data: bytes, *,
          hostname: str, to: str, now: float | None = None, retry_until: float | None = None) -> bytes:
    """The DSN for `recipients` of `env` (action 'failed' or 'delayed'), to `to`."""
    now = time.time() if now is None else now
    boundary = f"=_dsn_{secrets.token_hex(12)}"
    hostname = _clean(hostname, 255)
    if action == "failed":
        subject = "Undelivered Mail Returned to Sender"
        intro = ("This is the mail system at host {h}.\n\n"
                 "I'm sorry to have to inform you that your message could not\n"
                 "be delivered to one or more recipients. It's attached below.\n\n"
                 "The mail system\n").format(h=hostname)
    else:
        subject = "Delayed Mail (still being retried)"
        until = _date(retry_until) if retry_until else "later"
        intro = ("This is the mail system at host {h}.\n\n"
                 "####################################################################\n"
                 "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
                 "####################################################################\n\n"
                 "Your message could not be delivered for {age} hours.\n"
                 "It will be retried until {until}.\n\n"
                 "The mail system\n").format(h=hostname, age=round((now - env.created) / 3600, 1), until=until)
    lines = [f"<{_clean(r.address)}>: {_clean(r.reply or r.status)}" for r in recipients]
    human = intro + "\n" + "\n".join(lines) + "\n"

    status = [f"Reporting-MTA: dns; {hostname}",
              f"X-Mailctl-Queue-ID: {env.id}",
              f"X-Original-Envelope-Sender: rfc822; {_clean(env.sender) or '<>'}",
              f"Arrival-Date: {_date(env.created)}", ""]
    for r in recipients:
        code = r.dsn or ("5.0.0" if action == "failed" else "4.0.0")
        if action == "failed" and not code.startswith("5"):
            code = "5" + code[1:] if code[:1] == "4" else "5.0.0"
        status.append(f"Final-Recipient: rfc822; {_clean(r.address)}")
        if r.orcpt:
            status.append(f"Original-Recipient: rfc822; {_clean(r.orcpt)}")
        status.append(f"Action: {action}")
        status.append(f"Status: {code}")
        if r.remote:
            status.append(f"Remote-MTA: dns; {_clean(r.remote, 255)}")
        if r.code:
            status.append(f"Diagnostic-Code: smtp; {_clean(r.reply) or r.code}")
        elif r.reply:
            status.append(f"Diagnostic-Code: X-mailctl; {_clean(r.reply)}")
        if env.last_attempt:
            status.append(f"Last-Attempt-Date: {_date(env.last_attempt)}")
        if action == "delayed" and retry_until:
            status.append(f"Will-Retry-Until: {_date(retry_until)}")
        status.append("")

    head = [f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
            f"To: <{_clean(to)}>",
            f"Subject: {subject}",
            f"Date: {_date(now)}",
            f"Message-ID: <{env.id}.{secrets.token_hex(4)}.dsn@{hostname}>",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
            "", "This is a MIME-encapsulated message.", ""]
    parts = [
        f"--{boundary}\nContent-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n{human}",
        f"--{boundary}\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
        + "\n".join(status),
    ]
    text = "\n".join(head) + "\n".join(parts)
    out = text.encode("ascii", "replace")
    out += (f"\n--{boundary}\nContent-Description: Undelivered Message Headers\n"
            f"Content-Type: text/rfc822-headers\n\n").encode()
    out += original_headers(data)
    out += f"\n--{boundary}--\n".encode()
    return out.replace(b"\n", b"\r\n")


def postmaster(settings, directory) -> str:
    """The administrator (server.postmaster), else what a bare <postmaster> means
    (engine.directory decides both)."""
    return administrator(settings) or directory.postmaster()


def notify(root, settings, directory, env: Envelope, recipients: list[Recipient], action: str,
           data: bytes, now: float | None = None, log=None) -> str | None:
    """Deliver a DSN about `recipients` of `env` to its sender. A failure notice about mail
    with a null sender goes to the postmaster; a bounce is never bounced. Returns the
    address notified, or None."""
    from .. import delivery
    if env.sender:
        to, source = env.sender, "dsn"
    elif action == "failed" and env.source != "postmaster-notice":
        to, source = postmaster(settings, directory), "postmaster-notice"
    else:
        return None
    if not to:
        if log:
            log.error("queue %s: no postmaster address to notify; set server.postmaster", env.id)
        return None
    retry_until = env.created + float(settings.queue.max_age_days) * 86400
    message = build(env, recipients, action, data, hostname=settings.server.hostname, to=to,
                    now=now, retry_until=retry_until)
    outcome = delivery.deliver(root, settings, directory, "", [to], message, source=source)
    if outcome.rejected:
        if log:
            log.error("queue %s: %s notice to %s not delivered: %s", env.id, action, to,
                      "; ".join(str(v) for v in outcome.rejected.values()))
        return None
    return to
