"""The messages a Sieve script sends: the reply of a vacation action (RFC 5230, RFC 3834
§3), once per sender per period, and the notice of a notify action with mailto (RFC 5435,
RFC 5436); each queued with the delivery that caused it (the hook before its commit, as
redirects), with a null envelope sender.

Whom a mailbox answered: one file per (mailbox, handle, sender) under state/vacation/,

    state/vacation/<sha256 of "mailbox NUL handle NUL sender">    its mtime: when the period ends

checked and written in one step (engine/expiring.py), so two messages from one sender
reaching two serving processes at once get exactly one reply. The handle is the script's :handle, else one made from
the reason, :subject, :from and :mime (RFC 5230 §4.2): a changed text answers again.

The reply: From the mailbox (or :from, when it is an address), To the envelope sender,
Subject :subject or "Auto: " and the original's, In-Reply-To and References of the
original, Auto-Submitted: auto-replied, the reason as UTF-8 text (with :mime, the reason
is the MIME entity). Its envelope sender is null: nothing ever bounces back to a reply.
"""
from __future__ import annotations

import hashlib
import logging
from email.header import Header
from email.utils import formatdate, make_msgid, parseaddr

from ..expiring import seen_or_mark
from ..sieve.message import SieveMessage
from ..sieve.vacation import reply_due

log = logging.getLogger("mailctl.sieve")
DIRNAME = "vacation"


def handle_of(action) -> str:
    d = action.details
    if d.get("handle"):
        return "handle:" + d["handle"]
    made = "\0".join((action.arg, d.get("subject", ""), d.get("from", ""), "mime" if d.get("mime") else ""))
    return "made:" + hashlib.sha256(made.encode("utf-8", "surrogateescape")).hexdigest()


def claim(root, mailbox: str, handle: str, sender: str, seconds: float, now: float | None = None) -> bool:
    """True when this sender is due a reply now (and is then recorded as answered until
    now + seconds); False while a reply of this period was sent."""
    return not seen_or_mark(root, DIRNAME, (mailbox.lower(), handle, sender.lower()), seconds, now=now)


def compose(message: SieveMessage, mailbox: str, action) -> bytes:
    """The reply to message for mailbox (RFC 3834 §3)."""
    d = action.details
    name, addr = parseaddr(d.get("from", ""))
    sender = d["from"] if addr and "@" in addr else mailbox
    original = (message.headers("subject") or [""])[0].strip()
    subject = d.get("subject") or f"Auto: {original}"
    msgid = (message.headers("message-id") or [""])[0].strip()
    refs = " ".join(r.strip() for r in message.headers("references")) if message.headers("references") else ""
    lines = [f"From: {_header(sender)}", f"To: <{message.sender}>", f"Subject: {_header(subject)}",
             f"Date: {formatdate(localtime=True)}", f"Message-ID: {make_msgid(domain=mailbox.rpartition('@')[2])}",
             "Auto-Submitted: auto-replied (vacation)", "Precedence: bulk", "MIME-Version: 1.0"]
    if msgid:
        lines += [f"In-Reply-To: {msgid}", f"References: {(refs + ' ' + msgid).strip()}"]
    head = "\r\n".join(line.replace("\r", " ").replace("\n", " ") for line in lines).encode("utf-8")
    reason = action.arg.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "surrogateescape")
    if d.get("mime"):
        return head + b"\r\n" + reason + (b"" if reason.endswith(b"\r\n") else b"\r\n")
    return (head + b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + reason + (b"" if reason.endswith(b"\r\n") else b"\r\n"))


def _header(text: str) -> str:
    """A header value: as it is when ASCII, else RFC 2047 encoded."""
    return text if text.isascii() else Header(text, "utf-8").encode()


def queue_replies(arrival, mailbox: str, message: SieveMessage, result) -> None:
    """For each vacation action of result that is due, queue its reply with the delivery."""
    for action in result.actions:
        if action.kind != "vacation":
            continue
        due, why = reply_due(message, [mailbox, *action.details.get("addresses", ())])
        if not due:
            log.info("sieve: %s: no vacation reply to %s: %s", mailbox, message.sender or "<>", why)
            continue
        _queue_when_committed(arrival, mailbox, message, action)


def _queue_when_committed(arrival, mailbox: str, message: SieveMessage, action) -> None:
    from ..queue import Queue
    previous = arrival.before_commit

    def hook(staged, queued):
        if previous is not None:
            previous(staged, queued)
        seconds = action.details.get("seconds", 7 * 86400)
        if not claim(arrival.root, mailbox, handle_of(action), message.sender, seconds):
            log.info("sieve: %s: vacation reply to %s sent already this period", mailbox, message.sender)
            return
        queued.append(Queue(arrival.root).stage("", [message.sender], compose(message, mailbox, action),
                                                source="sieve"))
        log.info("sieve: %s: vacation reply to %s queued", mailbox, message.sender)
    arrival.before_commit = hook


def queue_notifications(arrival, mailbox: str, message: SieveMessage, result) -> None:
    """For each notify action of result, queue its notice (RFC 5436 §2.7: never about a
    message that is itself automatic)."""
    notices = [a for a in result.actions if a.kind == "notify"]
    if not notices:
        return
    auto = (message.headers("auto-submitted") or ["no"])[0].strip().lower()
    if not auto.startswith("no"):
        log.info("sieve: %s: no notification about an automatic message", mailbox)
        return
    from ..queue import Queue
    previous = arrival.before_commit

    def hook(staged, queued):
        if previous is not None:
            previous(staged, queued)
        for action in notices:
            d = action.details
            data = notice(message, mailbox, d)
            queued.append(Queue(arrival.root).stage("", [*d["to"], *d["cc"]], data, source="sieve"))
            log.info("sieve: %s: notification to %s queued", mailbox, ", ".join(d["to"] + d["cc"]))
    arrival.before_commit = hook


def notice(message: SieveMessage, mailbox: str, d: dict) -> bytes:
    """The notification (RFC 5436 §2.7): From the user (or :from), the importance, Auto-Submitted."""
    _, addr = parseaddr(d.get("from", ""))
    sender = d["from"] if addr and "@" in addr else mailbox
    original = (message.headers("subject") or [""])[0].strip()
    author = (message.headers("from") or [message.sender or "<>"])[0].strip()
    subject = d.get("subject") or f"New mail: {original}"
    body = d.get("body") or f"You have new mail from {author}\nSubject: {original}\n"
    lines = [f"From: {_header(sender)}", f"To: {', '.join(f'<{a}>' for a in d['to']) or 'undisclosed-recipients:;'}",
             *([f"Cc: {', '.join(f'<{a}>' for a in d['cc'])}"] if d["cc"] else []),
             f"Subject: {_header(subject)}", f"Date: {formatdate(localtime=True)}",
             f"Message-ID: {make_msgid(domain=mailbox.rpartition('@')[2])}", "Auto-Submitted: auto-notified",
             f"X-Priority: {({'1': '1 (Highest)', '3': '5 (Lowest)'}).get(d.get('importance', '2'), '3 (Normal)')}",
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    head = "\r\n".join(line.replace("\r", " ").replace("\n", " ") for line in lines)
    text = body.replace("\r\n", "\n").replace("\n", "\r\n")
    return (head + "\r\n\r\n" + text + ("" if text.endswith("\r\n") else "\r\n")).encode("utf-8", "replace")
