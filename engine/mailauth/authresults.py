"""The Authentication-Results header field (RFC 8601): the one we add, with our host name
as authserv-id, and removing those that claim our authserv-id before we add ours (§5: a
sender could forge one to make a reader trust it).

Everything in it that came from the network (domains, selectors, reasons) is reduced to
what the field's grammar allows, so a hostile value can never end the field or add one.
"""
from __future__ import annotations

import re

NAME = b"authentication-results"
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@]+\Z")
_UNSAFE_IN_QUOTES = re.compile(r'[^\x20-\x7e]|["\\]')
_UNSAFE_IN_COMMENT = re.compile(r"[^\x20-\x7e]|[()\\]")
MAX_VALUE = 255
MAX_COMMENT = 100


def value(text: str) -> str:
    """A property value: a token as it is, anything else as a quoted-string."""
    text = text[:MAX_VALUE]
    if _TOKEN.match(text):
        return text
    return '"' + _UNSAFE_IN_QUOTES.sub("?", text) + '"'


def comment(text: str) -> str:
    text = " ".join(_UNSAFE_IN_COMMENT.sub("?", text[:MAX_COMMENT * 2]).split())[:MAX_COMMENT]
    return f" ({text})" if text else ""


def result(method: str, outcome: str, why: str = "", **props: str) -> str:
    """One resinfo: 'dkim=pass (reason) header.d=example.com'; props as header_d='x'
    (the first '_' becomes '.'); empty ones are left out."""
    out = f"{method}={outcome}{comment(why)}"
    for key, v in props.items():
        if v:
            out += f" {key.replace('_', '.', 1)}={value(v)}"
    return out


def header(authserv_id: str, results: list[str]) -> bytes:
    """The whole field, folded one result a line (without its final line end)."""
    if not results:
        return f"Authentication-Results: {value(authserv_id)}; none".encode()
    return (f"Authentication-Results: {value(authserv_id)};\r\n\t" + ";\r\n\t".join(results)).encode()


def fields(block: bytes) -> list[bytes]:
    """The header block's fields, each with its continuation lines and line ends."""
    out: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += line
        else:
            out.append(line)
    return out


def authserv_id(field: bytes) -> str:
    """The authserv-id an Authentication-Results field claims ('' if none can be read)."""
    _, _, rest = field.partition(b":")
    text = rest.decode("utf-8", "replace")
    text = re.sub(r"\([^()]*\)", " ", text)          # comments (CFWS), one level is enough
    head = text.split(";", 1)[0].split()
    return head[0].strip('"').lower() if head else ""


def remove_claiming(block: bytes, ours: str) -> tuple[bytes, int]:
    """block without the Authentication-Results fields that claim authserv-id ours."""
    if b"uthentication-" not in block and b"UTHENTICATION-" not in block:
        return block, 0
    kept, removed = [], 0
    ours = ours.lower()
    for f in fields(block):
        if f.split(b":", 1)[0].strip().lower() == NAME and authserv_id(f) == ours:
            removed += 1
        else:
            kept.append(f)
    return (b"".join(kept), removed) if removed else (block, 0)
