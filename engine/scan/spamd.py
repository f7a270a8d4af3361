"""A client of SpamAssassin's spamd (the spamc protocol, port 783 by default).

    verdict = check("127.0.0.1:783", message, timeout=15)     # SYMBOLS
    ping("127.0.0.1:783", timeout=2)                            # PING -> PONG

The request is `SYMBOLS SPAMC/1.5`, Content-length, an optional User, a blank line and the
message; spamd answers `SPAMD/1.1 0 EX_OK`, `Spam: True ; 15.0 / 5.0` and, as its body, the
names of the rules that matched separated by commas. Any other answer is ScanFailed.
"""
from __future__ import annotations

import re

from .exchange import exchange
from .verdict import ScanFailed, SpamVerdict

ENGINE = "SpamAssassin"
MAX_REPLY = 64 * 1024
_STATUS = re.compile(rb"SPAMD/\d\.\d{1,2} +(\d{1,3}) +([A-Za-z_]{1,40})\Z")
_SPAM = re.compile(r"(True|False|Yes|No) ; (-?\d{1,6}(?:\.\d{1,6})?) / (-?\d{1,6}(?:\.\d{1,6})?)\Z", re.I)
RULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")
MAX_RULES = 60


def request(message: bytes, user: str = "") -> bytes:
    head = f"SYMBOLS SPAMC/1.5\r\nContent-length: {len(message)}\r\n"
    if user and re.fullmatch(r"[\x21-\x7e]{1,320}", user):       # never a line of its own
        head += f"User: {user}\r\n"
    return head.encode("ascii", "replace") + b"\r\n" + message


def parse_reply(raw: bytes) -> SpamVerdict:
    """spamd's answer to SYMBOLS as a SpamVerdict, else ScanFailed."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ScanFailed("spamd answered something else than a verdict (no header end)")
    lines = head.split(b"\r\n")
    status = _STATUS.match(lines[0])
    if not status:
        raise ScanFailed("spamd answered something else than a verdict")
    if status.group(1) != b"0":
        raise ScanFailed(f"spamd: error {int(status.group(1))} {status.group(2).decode()}")
    spam = None
    length = None
    for line in lines[1:]:
        name, colon, value = line.decode("ascii", "replace").partition(":")
        if not colon:
            raise ScanFailed("spamd answered something else than a verdict (a bad header line)")
        name, value = name.strip().lower(), value.strip()
        if name == "spam":
            spam = _SPAM.match(value)
            if not spam:
                raise ScanFailed("spamd answered something else than a verdict (its Spam line)")
        elif name == "content-length":
            length = int(value) if value.isdigit() and len(value) < 9 else -1
    if spam is None:
        raise ScanFailed("spamd answered without a Spam line")
    if length is not None and length != len(body):
        raise ScanFailed("spamd's answer is cut short")
    names = body.decode("ascii", "replace").strip().split(",") if body.strip() else []
    if not all(RULE.match(n) for n in names):
        raise ScanFailed("spamd answered something else than rule names")
    is_spam = spam.group(1).lower() in ("true", "yes")
    return SpamVerdict(ENGINE, float(spam.group(2)), float(spam.group(3)), "spam" if is_spam else "no action",
                       tuple(names[:MAX_RULES]))


def check(address: str, message: bytes, timeout: float, user: str = "") -> SpamVerdict:
    return parse_reply(exchange("spamd", address, request(message, user), timeout, MAX_REPLY))


def ping(address: str, timeout: float = 2.0) -> bool:
    """Does spamd answer PING with PONG?"""
    try:
        raw = exchange("spamd", address, b"PING SPAMC/1.5\r\n\r\n", timeout, 1024)
    except (ScanFailed, ValueError):
        return False
    return bool(re.match(rb"SPAMD/\d\.\d{1,2} +0 +PONG\r\n", raw))
