"""Encoding IMAP response data (RFC 3501 §4, §9): Python values -> wire bytes.

    None -> NIL, int -> number, Atom/Raw -> as is, bytes/str -> quoted string when
    safe, else a literal, list -> parenthesised list (a mime._Multi list has no
    spaces between its child lists, as body-type-mpart requires).
"""
from __future__ import annotations

from .parser import Atom
from .mime import _Multi


class Raw(bytes):
    """Bytes written exactly as given (already encoded response text)."""


_QUOTE_SAFE_MAX = 200


def encode(value) -> bytes:
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _encode(value, out: bytearray) -> None:
    if value is None:
        out += b"NIL"
    elif isinstance(value, Raw):
        out += value
    elif isinstance(value, Atom):
        out += value.encode("ascii")
    elif isinstance(value, bool):
        raise TypeError("bool in IMAP response")
    elif isinstance(value, int):
        out += str(value).encode()
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out += string(bytes(value))
    elif isinstance(value, str):
        out += string(value.encode("utf-8"))
    elif isinstance(value, list):
        out += b"("
        sep = b"" if isinstance(value, _Multi) else b" "
        for i, item in enumerate(value):
            if i:
                # body-type-mpart: "(body)(body) subtype ..." - no space between bodies
                out += b"" if (sep == b"" and isinstance(item, list) and isinstance(value[i - 1], list)) else b" "
            _encode(item, out)
        out += b")"
    else:
        raise TypeError(f"cannot encode {type(value).__name__}")


def string(data: bytes) -> bytes:
    """A quoted string if that is possible and short, else a literal."""
    if len(data) <= _QUOTE_SAFE_MAX and all(0x20 <= c < 0x7F for c in data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def astring(text: str) -> bytes:
    """A mailbox name or other astring: an atom when it is one, else a string."""
    raw = text.encode("utf-8")
    if raw and all(c > 0x20 and c < 0x7F and c not in b'(){%*"\\]' for c in raw):
        return raw
    return string(raw)
