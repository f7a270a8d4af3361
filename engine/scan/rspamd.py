"""A client of rspamd's normal worker (its HTTP protocol, port 11333 by default).

    verdict = check("127.0.0.1:11333", message, timeout=15, ip=..., helo=..., sender=..., rcpts=[...])
    ping("127.0.0.1:11333", timeout=2)                          # GET /ping -> pong

`POST /checkv2` with the envelope in request headers (IP, Helo, From, Rcpt, User, Queue-Id)
and the message as the body; rspamd answers JSON: score, required_score, action and the
symbols that matched, each with its score. Anything else is ScanFailed.
"""
from __future__ import annotations

import json
import re

from .exchange import exchange
from .verdict import ScanFailed, SpamVerdict

ENGINE = "rspamd"
MAX_REPLY = 1024 * 1024
ACTIONS = ("no action", "greylist", "add header", "rewrite subject", "soft reject", "reject")
SYMBOL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")
MAX_SYMBOLS = 60
_HEADER_VALUE = re.compile(r"[\x21-\x7e]{1,320}\Z")


def request(message: bytes, *, ip: str = "", helo: str = "", sender: str = "", rcpts=(), user: str = "",
            queue_id: str = "") -> bytes:
    fields = [("IP", ip), ("Helo", helo), ("From", sender), *(("Rcpt", r) for r in rcpts), ("User", user),
              ("Queue-Id", queue_id)]
    head = "POST /checkv2 HTTP/1.1\r\nHost: rspamd\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in fields if v and _HEADER_VALUE.match(v))   # no header injection
    head += f"Content-Length: {len(message)}\r\n\r\n"
    return head.encode("ascii") + message


def _number(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1e6 < v < 1e6:
        raise ScanFailed("rspamd answered something else than a verdict (a score is not a number)")
    return float(v)


def parse_reply(raw: bytes) -> SpamVerdict:
    """rspamd's HTTP answer to /checkv2 as a SpamVerdict, else ScanFailed."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    status = re.match(rb"HTTP/1\.[01] (\d{3}) ", head + b" ")
    if not sep or not status:
        raise ScanFailed("rspamd answered something else than HTTP")
    if status.group(1) != b"200":
        raise ScanFailed(f"rspamd: HTTP status {status.group(1).decode()}")
    if re.search(rb"\r\ntransfer-encoding:", head, re.I):
        raise ScanFailed("rspamd answered in chunks (not asked for)")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ScanFailed("rspamd answered something else than JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("action"), str) or data["action"] not in ACTIONS:
        raise ScanFailed("rspamd answered something else than a verdict (no known action)")
    symbols = data.get("symbols", {})
    if not isinstance(symbols, dict):
        raise ScanFailed("rspamd answered something else than a verdict (its symbols)")
    weighed = []
    for name, sym in symbols.items():
        points = _number(sym.get("score", 0)) if isinstance(sym, dict) else 0.0
        if SYMBOL.match(name):
            weighed.append((-points, name))
    names = tuple(name for _, name in sorted(weighed)[:MAX_SYMBOLS])
    return SpamVerdict(ENGINE, _number(data.get("score")), _number(data.get("required_score")), data["action"],
                       names)


def check(address: str, message: bytes, timeout: float, **envelope) -> SpamVerdict:
    return parse_reply(exchange("rspamd", address, request(message, **envelope), timeout, MAX_REPLY))


def ping(address: str, timeout: float = 2.0) -> bool:
    """Does rspamd answer GET /ping with pong?"""
    try:
        raw = exchange("rspamd", address, b"GET /ping HTTP/1.0\r\nHost: rspamd\r\n\r\n", timeout, 4096)
    except (ScanFailed, ValueError):
        return False
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")) and body.strip() == b"pong"
