"""Encoding IMAP response data (RFC 3501 §4, §9): Python values -> wire bytes.

    None -> NIL, int -> number, Atom/Raw -> as is, bytes/str -> quoted string when
    safe, else a literal, list -> parenthesised list (a mime.UnspacedList has no
    spaces between its child lists, as body-type-mpart requires).
"""
from __future__ import annotations

import re

from .parser import Atom
from .mime import UnspacedList


class Raw(bytes):
    """Bytes written exactly as given (already encoded response text)."""


_QUOTE_SAFE_MAX = 200


def encode(value) -> bytes:
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _encode(value, out: bytearray) -> None:
    t = type(value)
    if t is bytes:
        out += string(value)
    elif value is None:
        out += b"NIL"
    elif t is list or t is UnspacedList:
        out += b"("
        multi = t is UnspacedList
        prev_list = False
        for i, item in enumerate(value):
            is_list = type(item) is list or type(item) is UnspacedList
            # body-type-mpart: "(body)(body) subtype ..." - no space between bodies
            if i and not (multi and is_list and prev_list):
                out += b" "
            _encode(item, out)
            prev_list = is_list
        out += b")"
    elif t is int:
        out += str(value).encode()
    elif t is Raw:
        out += value
    elif t is Atom:
        out += value.encode("ascii")
    elif t is str:
        out += string(value.encode("utf-8"))
    elif isinstance(value, (bytearray, memoryview)):
        out += string(bytes(value))
    else:
        raise TypeError(f"cannot encode {t.__name__}")


_NOT_QUOTABLE = re.compile(rb"[^\x20-\x7e]")


def string(data: bytes) -> bytes:
    """A quoted string if that is possible and short, else a literal. A NUL, which no
    IMAP4rev1 string may hold (CHAR8 is 0x01-0xff), is sent as 0x80, as Dovecot does."""
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    if len(data) <= _QUOTE_SAFE_MAX and not _NOT_QUOTABLE.search(data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def literal(data: bytes) -> bytes:
    """A literal of text (BODY[], RFC822...): a NUL, which no {n} literal may hold
    (RFC 3501 §4.3; only BINARY's literal8 may), goes out as 0x80, as Dovecot sends it."""
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    return b"{%d}\r\n" % len(data) + data


def literal_parts(data: bytes) -> tuple[bytes, bytes]:
    """literal(data) as its announcement and its bytes, for a caller that joins a whole
    response once instead of copying a large message at every step."""
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    return b"{%d}\r\n" % len(data), data


def astring(text: str) -> bytes:
    """A mailbox name or other astring: an atom when it is one, else a string."""
    raw = text.encode("utf-8")
    if raw and all(c > 0x20 and c < 0x7F and c not in b'(){%*"\\]' for c in raw):
        return raw
    return string(raw)
