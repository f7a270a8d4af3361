"""MX backup "incoming relays": the address of the client that handed a message to one of
our relays, read from the Received header the relay added (feature-inventory §1.4, §7.4).

Only the fields above the message's own are believed, and only those our relays wrote:
the top field is the relay's record of its client. When that client is itself one of
our relays (a chain of backups), or a loopback hop inside the relay (a content filter),
the next field down is read, at most MAX_HOPS of them. Anything that does not yield one
clear address gives None, and the checks keep the relay's own address.

The address a relay saw is in the TCP-info comment of the from-clause (RFC 5321
§4.4): 'from helo.example (host.example [192.0.2.1])' (Postfix, Sendmail, ours),
'from host ([192.0.2.1] helo=x)' (Exim), 'from HOST (192.0.2.1)' (Exchange);
only when there is no comment address is a bracketed from-domain taken ('from [192.0.2.1]').
"""
from __future__ import annotations

import re

from .patterns import in_networks, parse_ip

MAX_HOPS = 5
MAX_FIELD = 4096             # a Received field longer than this is not read
_NAME = re.compile(rb"received[ \t]*:", re.IGNORECASE)
_LITERAL = re.compile(r"\[(?:ipv6:)?([0-9a-f:.]{2,45})\]", re.IGNORECASE)
_BARE = re.compile(r"(?<![\w.:])([0-9a-f:.]{2,45})(?![\w.:])", re.IGNORECASE)


def received_fields(header: bytes, limit: int = MAX_HOPS + 1) -> list[str]:
    """The unfolded values of the first `limit` Received fields of a header block, top first."""
    out: list[str] = []
    current: list[bytes] | None = None
    for line in header.split(b"\n"):
        line = line.rstrip(b"\r")
        if not line:
            break                                   # the end of the header block
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current.append(line)
            continue
        if current is not None:
            out.append(_value(current))
            current = None
            if len(out) >= limit:
                return out
        m = _NAME.match(line)
        if m:
            current = [line[m.end():]]
    if current is not None and len(out) < limit:
        out.append(_value(current))
    return out


def _value(parts: list[bytes]) -> str:
    raw = b" ".join(p.strip() for p in parts)
    return raw[:MAX_FIELD + 1].decode("ascii", "replace")


def from_clause(value: str) -> tuple[str, list[str]] | None:
    """(the from-domain, the comments after it) of a Received value, or None when it
    has no from-clause. Comments nest; the clause ends at the first word outside them."""
    if len(value) > MAX_FIELD:
        return None
    text = value.strip()
    if text[:4].lower() != "from" or text[4:5] not in (" ", "\t"):
        return None
    i, n = 4, len(text)
    while i < n and text[i] in " \t":
        i += 1
    start = i
    while i < n and text[i] not in " \t(":
        i += 1
    domain = text[start:i]
    comments: list[str] = []
    while i < n:
        if text[i] in " \t":
            i += 1
        elif text[i] == "(":
            depth, j = 0, i
            while j < n:
                if text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                elif text[j] == "\\":
                    j += 1
                j += 1
            if depth:
                return None                         # an unclosed comment: malformed
            comments.append(text[i + 1:j])
            i = j + 1
        else:
            break                                   # 'by', 'with', ...: the clause ended
    return domain, comments


def client_of(value: str) -> str | None:
    """The client address one Received field records, or None when it names none clearly."""
    clause = from_clause(value)
    if clause is None:
        return None
    domain, comments = clause
    for pattern in (_LITERAL, _BARE):
        for comment in comments:
            for m in pattern.finditer(comment):
                addr = parse_ip(m.group(1))
                if addr is not None:
                    return str(addr)
    m = _LITERAL.fullmatch(domain)
    if m and parse_ip(m.group(1)) is not None:
        return str(parse_ip(m.group(1)))
    return None


def original_client(header: bytes, relays) -> str | None:
    """The original client of a message from one of our incoming relays (its parsed
    networks), from the Received fields on top of its header block; None when unclear."""
    for value in received_fields(header):
        ip = client_of(value)
        if ip is None:
            return None
        addr = parse_ip(ip)
        if addr.is_loopback or in_networks(ip, relays):
            continue                                # a hop inside or between our relays
        return ip
    return None
