"""Telling a spam scanner what a user says a message is (engine/learning.py decides when).

    rspamd_learn("127.0.0.1:11334", "spam", message, timeout=15)      # -> LEARNED or KNOWN
    spamd_tell("127.0.0.1:783", "ham", message, timeout=15, user="")  # -> LEARNED or KNOWN

rspamd learns on its controller worker (port 11334, not the normal worker's 11333):
`POST /learnspam` or `/learnham`; it answers 200 `{"success":true}`, or 208 when it had
learned that message as that already. spamd learns through the spamc protocol's TELL
(spamd started with --allow-tell): `Message-class: spam|ham` and `Set: local`; it answers
`SPAMD/1.1 0 EX_OK` with `DidSet: local` when it learned, without when it knew. A message
learned as spam and later told as ham is re-learned by both. Anything else is ScanFailed.
"""
from __future__ import annotations

import json
import re

from .exchange import exchange
from .verdict import ScanFailed

KINDS = ("spam", "ham")
LEARNED, KNOWN = "learned", "known"
MAX_REPLY = 64 * 1024
_HTTP_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})[ \r]")
_SPAMD_STATUS = re.compile(rb"SPAMD/\d\.\d{1,2} +(\d{1,3}) +([A-Za-z_]{1,40})\Z")
_USER = re.compile(r"[\x21-\x7e]{1,320}\Z")


def _shown(text: str) -> str:
    """A scanner's own words, fit for one log line."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:200]


def rspamd_request(kind: str, message: bytes) -> bytes:
    return (f"POST /learn{kind} HTTP/1.1\r\nHost: rspamd\r\nConnection: close\r\n"
            f"Content-Length: {len(message)}\r\n\r\n").encode("ascii") + message


def rspamd_reply(raw: bytes) -> str:
    head, sep, body = raw.partition(b"\r\n\r\n")
    status = _HTTP_STATUS.match(head + b"\r")
    if not sep or not status:
        raise ScanFailed("rspamd's controller answered something else than HTTP")
    code = status.group(1)
    if code == b"208":
        return KNOWN
    try:
        data = json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError):
        data = {}
    if code == b"200" and isinstance(data, dict) and data.get("success") is True:
        return LEARNED
    error = data.get("error") if isinstance(data, dict) else None
    raise ScanFailed(f"rspamd's controller: HTTP status {code.decode()}"
                     + (f": {_shown(error)}" if isinstance(error, str) else ""))


def spamd_request(kind: str, message: bytes, user: str = "") -> bytes:
    head = f"TELL SPAMC/1.5\r\nMessage-class: {kind}\r\nSet: local\r\nContent-length: {len(message)}\r\n"
    if user and _USER.match(user):        # never a line of its own
        head += f"User: {user}\r\n"
    return head.encode("ascii") + b"\r\n" + message


def spamd_reply(raw: bytes) -> str:
    head, sep, _ = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = _SPAMD_STATUS.match(lines[0])
    if not sep or not status:
        raise ScanFailed("spamd answered something else than its protocol")
    if status.group(1) != b"0":
        # 69 EX_UNAVAILABLE: spamd was started without --allow-tell
        raise ScanFailed(f"spamd: error {int(status.group(1))} {status.group(2).decode()}")
    did = [line.partition(b":")[2].strip().lower() for line in lines[1:] if line.lower().startswith(b"didset:")]
    return LEARNED if did and b"local" in did[0] else KNOWN


def rspamd_learn(address: str, kind: str, message: bytes, timeout: float) -> str:
    assert kind in KINDS
    return rspamd_reply(exchange("rspamd", address, rspamd_request(kind, message), timeout, MAX_REPLY))


def spamd_tell(address: str, kind: str, message: bytes, timeout: float, user: str = "") -> str:
    assert kind in KINDS
    return spamd_reply(exchange("spamd", address, spamd_request(kind, message, user), timeout, MAX_REPLY))
