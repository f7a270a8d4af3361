"""The attachment-blocking stage ([attachments] in mailctl.toml, engine/scan/attachments.py
decides which parts): a blocked attachment is replaced by a short text part saying what
was removed and why (hMailServer's behaviour; engine/scan/strip.py keeps every other
byte), or the message is refused with 554 5.7.1 naming the file, as the recipients'
domains ask (attachment_action). A message whose parts cannot all be examined (over
max_parts) is refused; one that is a single blocked part is refused (nothing to keep).

Mail coming in from outside on port 25 is checked; with attachments.submission also mail
from authenticated users, trusted networks and this machine. Logged and counted.
"""
from __future__ import annotations

import threading
from collections import Counter
from functools import partial

from ..imap.mime import Part
from ..largemsg import LargeMessage
from ..scan import attachments, strip
from ..smtp import replies
from .arrival import SMTP, Arrival
from .verdicts import CONTINUE, Reject

_counts: Counter = Counter()
_counts_lock = threading.Lock()


def block_attachments(arrival: Arrival):
    """The stage: replace or refuse the blocked attachments."""
    cfg = getattr(arrival.settings, "attachments", None)
    env = arrival.envelope
    if cfg is None or not cfg.enabled:
        return CONTINUE
    if not (cfg.submission or (env.source == SMTP and not env.vouched)):
        return CONTINUE
    action = _action(arrival, cfg)
    if action is None:
        return CONTINUE
    who = f"{env.client_ip or env.source}: {env.txid or '-'}"
    content = arrival.content
    data = content.read_all() if isinstance(content, LargeMessage) else bytes(content)
    found = examine(cfg, data, arrival.eol)
    if found is None:
        _count("attachments_too_many_parts")
        arrival.log.warning("attachments: %s: refused: over %d MIME parts", who, cfg.max_parts)
        return Reject(replies.TOO_MANY_PARTS, "attachments-parts")
    new, removed = found
    if not removed:
        return CONTINUE
    listed = "; ".join(f"{name}: {why}" for name, why in removed)
    if action == "refuse" or new is None:
        _count("attachments_refused")
        arrival.log.warning("attachments: %s: refused: %s", who, listed)
        return Reject(replies.attachment_blocked(removed[0][0]), "attachment")
    _count("attachments_replaced")
    arrival.log.info("attachments: %s: removed %s", who, listed)
    arrival.content = new
    return CONTINUE


def examine(cfg, data: bytes, eol: bytes = b"\r\n") -> tuple[bytes | None, list[tuple[str, str]]] | None:
    """(the message with its blocked parts replaced, or None when it is one blocked part;
    [(name, why)] of each blocked part) or None when it has over cfg.max_parts parts."""
    judge = partial(attachments.judge, cfg=cfg)
    try:
        new, removed = strip.replace_parts(data, judge, eol, cfg.max_parts)
    except strip.CannotStrip as e:
        if e.reason == "too-many":
            return None
        crlf = data if eol == b"\r\n" else data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        answer = judge(Part(crlf, 0, len(crlf)))
        return (None, [answer]) if answer else (data, [])
    return new, [(name, why) for name, why in removed]


def _action(arrival: Arrival, cfg) -> str | None:
    """'replace' or 'refuse' (one recipient's domain asking refuse refuses it); None when
    every recipient is in a local domain that turned blocking off."""
    directory, action, opted_out = arrival.directory, cfg.action, 0
    recipients = arrival.envelope.recipients
    for rcpt in recipients:
        d = directory.domain(rcpt.rpartition("@")[2].lower()) if directory is not None else None
        if d is None:
            continue
        if not d.attachment_blocking:
            opted_out += 1
        elif d.attachment_action == "refuse":
            action = "refuse"
    return None if recipients and opted_out == len(recipients) else action


def _count(name: str) -> None:
    with _counts_lock:
        _counts[name] += 1


def counts() -> dict[str, int]:
    """This process's verdicts so far."""
    with _counts_lock:
        return dict(_counts)


def check(settings, data: bytes) -> tuple[str, str | None]:
    """`mailctl check message`: (which attachments would be removed, the reply it means or None)."""
    cfg = getattr(settings, "attachments", None)
    if cfg is None or not cfg.enabled:
        return "not checked (attachments.enabled is false)", None
    found = examine(cfg, data, b"\n" if b"\r\n" not in data[:4096] else b"\r\n")
    if found is None:
        return f"over {cfg.max_parts} MIME parts: refused", replies.TOO_MANY_PARTS
    new, removed = found
    if not removed:
        return "none blocked", None
    listed = "; ".join(f"{name} ({why})" for name, why in removed)
    if cfg.action == "refuse" or new is None:
        return f"refused: {listed}", replies.attachment_blocked(removed[0][0])
    return f"would be replaced by a note: {listed}", None
