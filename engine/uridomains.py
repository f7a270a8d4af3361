"""The domains of the URLs in a message's body, as URI block lists (SURBL, URIBL, Spamhaus
DBL) want them asked: the registered domain (www.shop.example.co.uk -> example.co.uk,
by the Public Suffix List), or an address in a URL by itself.

Bounded: at most max_bytes of the message are read, and at most max_domains distinct
domains come out (the first found), so a message of a million links costs no more than
one of twenty. Text parts are decoded (quoted-printable and base64), so a URL split by a
soft line break or hidden in base64 HTML is found; href="..." needs nothing special.
"""
from __future__ import annotations

import email
import email.policy
import ipaddress
import re
from urllib.parse import unquote


from . import headers
from .mailauth.dmarc import org_domain
from .publicsuffix import SUFFIXES

# scheme://[user@]host ; www.host without a scheme (mail clients make these links)
_URL = re.compile(rb"(?:\b(?:https?|ftp)://(?:[^\s/?#@\"'<>\\]{0,64}@)?|\bwww\.)"
                  rb"([A-Za-z0-9%._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])", re.IGNORECASE)
_HOST = re.compile(r"[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})+\Z")
_FIELD_LINE = re.compile(rb"[\t ]|[!-9;-~]+:")          # a continuation, or a field's name and colon
MAX_PARTS = 20                    # MIME parts decoded at most


def message_text(content, max_bytes: int) -> bytes:
    """The first max_bytes of the message, its text parts decoded (bytes, any charset:
    URLs are ASCII)."""
    raw = _first_bytes(content, max_bytes)
    plain = plain_body(raw)
    return plain if plain is not None else parsed_text(raw, max_bytes)


def plain_body(raw: bytes) -> bytes | None:
    """The body of a message that is one text part sent as it is (no multipart, neither
    quoted-printable nor base64, every header line a field): what the email package gives
    for it, without its parser (most mail; the parser cost more than the rest of the URI
    check). None for any other message."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = raw[:end + 2]
    if head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\r\n"):
        return None                 # a lone CR or LF ends a line for the parser
    if not all(_FIELD_LINE.match(line) for line in head.split(b"\r\n")[:-1]):
        return None
    ctype = headers.field_values(head, "Content-Type")       # the first counts, as for the parser
    cte = headers.field_values(head, "Content-Transfer-Encoding")
    if ctype and not ctype[0].split(";", 1)[0].strip().lower().startswith("text/"):
        return None
    if cte and cte[0].strip().lower() not in ("7bit", "8bit", "binary"):
        return None
    return raw[end + 4:]


def parsed_text(raw: bytes, max_bytes: int) -> bytes:
    """The text parts of a message, decoded, by the email package."""
    out = []
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        for n, part in enumerate(msg.walk()):
            if n >= MAX_PARTS:
                break
            if part.get_content_maintype() == "text":
                payload = part.get_payload(decode=True)     # quoted-printable, base64 or as sent
                if isinstance(payload, bytes):
                    out.append(payload[:max_bytes])
    except Exception:  # noqa: BLE001 - a malformed message: its raw text is what we look at
        return raw
    return b"\n".join(out)


def url_hosts(text: bytes, max_hosts: int) -> list[str]:
    """Distinct host names and addresses of URLs in text, in order, at most max_hosts."""
    found: list[str] = []
    for m in _URL.finditer(text):
        host = _host(m.group(1), m.group(0)[:4].lower() == b"www.")
        if host and host not in found:
            found.append(host)
            if len(found) >= max_hosts:
                break
    return found


def list_item(host: str) -> str:
    """What a URI list is asked about a host: an address as it is, else its registered
    domain ('' when the host is a public suffix alone)."""
    if ":" in host or host.replace(".", "").isdigit():      # else a name: no exceptions to pay for
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
    item = org_domain(host)
    return item if item and "." in item and not SUFFIXES.is_public(item) else ""


def list_items(content, max_bytes: int, max_items: int) -> list[str]:
    """The distinct items (registered domains, addresses) a message's URLs give."""
    items: list[str] = []
    for host in url_hosts(message_text(content, max_bytes), max_items * 4):
        item = list_item(host)
        if item and item not in items:
            items.append(item)
            if len(items) >= max_items:
                break
    return items


def _host(raw: bytes, www: bool) -> str:
    text = raw.decode("ascii", "replace")
    if text.startswith("["):
        try:
            return str(ipaddress.ip_address(text.strip("[]")))
        except ValueError:
            return ""
    text = unquote(text).lower().strip(".-")
    if www:
        text = "www." + text
    if text.replace(".", "").isdigit():
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            return ""
    return text if _HOST.match(text) else ""


def _first_bytes(content, limit: int) -> bytes:
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content[:limit])
    out, size = [], 0
    for piece in content:             # a LargeMessage: its head, then the file in pieces
        out.append(bytes(piece[:limit - size]))
        size += len(out[-1])
        if size >= limit:
            break
    return b"".join(out)
