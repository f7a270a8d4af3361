"""Sieve's editheader (RFC 5293): adding and deleting header fields of the message a
script runs on. The edits are made on the message's bytes (its header block only) so later
tests see them and the mailbox's copy is stored with them (engine/accept/sieving.py).

Received and Auto-Submitted fields are never deleted (RFC 5293 §7; Pigeonhole ignores such
a deleteheader with a warning, as we do); a value is stored on one line, RFC 2047-encoded
when it is not ASCII.
"""
from __future__ import annotations

import re
from email.header import Header, decode_header, make_header

FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]{1,76}\Z")
PROTECTED = {"received", "auto-submitted"}


def _split(raw: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(the header fields, each with its folded lines and line end; the line end; the rest)."""
    eol = b"\r\n" if b"\r\n" in raw[:4096] else b"\n"
    end = raw.find(eol + eol)
    head, rest = (raw, b"") if end < 0 else (raw[:end + len(eol)], raw[end + len(eol):])
    fields: list[bytes] = []
    for line in head.split(eol)[:-1] if head.endswith(eol) else head.split(eol):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + eol
        else:
            fields.append(line + eol)
    return fields, eol, rest


def _name(field: bytes) -> str:
    return field.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def _value(field: bytes) -> str:
    text = field.split(b":", 1)[1] if b":" in field else b""
    text = re.sub(rb"\r?\n[ \t]", b" ", text).strip().decode("utf-8", "replace")
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return text


def add(raw: bytes, name: str, value: str, last: bool = False) -> bytes:
    fields, eol, rest = _split(raw)
    value = " ".join(value.replace("\r", " ").replace("\n", " ").split())
    shown = value if value.isascii() else Header(value, "utf-8").encode()
    line = f"{name}: {shown}".encode("ascii", "replace") + eol
    fields = [*fields, line] if last else [line, *fields]
    return b"".join(fields) + eol + rest


def delete(raw: bytes, name: str, keep, index: int | None = None, from_end: bool = False) -> bytes:
    """raw without the fields called name that keep(value) answers False for; with index,
    only the index-th such field (counted from the end with from_end) is looked at."""
    if name.lower() in PROTECTED:
        return raw
    fields, eol, rest = _split(raw)
    named = [i for i, f in enumerate(fields) if _name(f) == name.lower()]
    if index is not None:
        at = len(named) - index if from_end else index - 1
        named = [named[at]] if 0 <= at < len(named) else []
    gone = {i for i in named if not keep(_value(fields[i]))}
    if not gone:
        return raw
    return b"".join(f for i, f in enumerate(fields) if i not in gone) + eol + rest
