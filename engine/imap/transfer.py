"""Content-Transfer-Encoding for BINARY (RFC 3516): a part's content decoded (FETCH
BINARY[part], BINARY.SIZE, and BINARY[] with every part decoded), and a message
APPENDed in a literal8 made storable.

A Maildir file holds lines (LF on disk, CRLF on the wire), so a part whose bytes are
not lines (a NUL, a CR or LF alone) cannot be stored as it came. As Dovecot does, such a
part is stored in base64 with its Content-Transfer-Encoding field saying so; BINARY[part]
then gives back the exact bytes. Works on a mime.Part of the CRLF message; never parses
twice.
"""
from __future__ import annotations

import base64
import binascii
import re

from . import mime


class UnknownCTE(Exception):
    """A part whose transfer encoding we cannot undo ([UNKNOWN-CTE], RFC 3516)."""


IDENTITY = frozenset({b"7bit", b"8bit", b"binary"})
_BARE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_CTE_FIELD = re.compile(rb"content-transfer-encoding[ \t]*:", re.IGNORECASE)
BASE64_LINE = 57              # input bytes per base64 line: 76 characters, as RFC 2045 wants


def encoding(part: mime.Part) -> bytes:
    """The part's transfer encoding in lower case, without comments (default 7bit)."""
    value = part.header("content-transfer-encoding")
    if value is None:
        return b"7bit"
    word = re.split(rb"[\s;(]", value.strip(), maxsplit=1)[0]
    return word.lower() or b"7bit"


def decode_quoted_printable(body: bytes) -> bytes:
    """RFC 2045 §6.7: white space at the end of a line is dropped (rule 3), "=" ending a
    line (spaces may follow it) is a soft line break (rule 5), =XX is one byte; an "="
    not followed by two hex digits stays as it is (the robust reading §6.7 suggests)."""
    # line by line: a regular expression for "spaces before a line end" backtracks over
    # every run of spaces (quadratic on a hostile body of spaces)
    return binascii.a2b_qp(b"\r\n".join(line.rstrip(b" \t") for line in body.split(b"\r\n")))


def decode_base64(body: bytes) -> bytes:
    """Characters outside the base64 alphabet are ignored (RFC 2045 §6.8), decoding ends
    at the padding; a body cut short gives what it holds (never an error)."""
    letters = _NOT_BASE64.sub(b"", body.split(b"=", 1)[0])
    letters = letters[:len(letters) - (len(letters) % 4 == 1)]   # a lone last letter is no byte
    return binascii.a2b_base64(letters + b"=" * (-len(letters) % 4))


def decoded_body(part: mime.Part) -> bytes:
    """A leaf's body with its transfer encoding undone."""
    body = part.body_bytes()
    enc = encoding(part)
    if enc in IDENTITY:
        return body
    if enc == b"base64":
        return decode_base64(body)
    if enc == b"quoted-printable":
        return decode_quoted_printable(body)
    raise UnknownCTE()


def decoded(part: mime.Part, with_header: bool) -> bytes:
    """What BINARY returns for a part: a leaf's decoded body; a multipart or a message
    with every leaf inside decoded (its encoding field then saying binary). with_header:
    the part's own header first (BINARY[] of the whole message)."""
    if not with_header and not part.is_multipart and part.message is None:
        return decoded_body(part)
    out: list[bytes] = []
    _rebuild(part, out, _decode_leaf)
    text = b"".join(out)
    return text if with_header else text[part.body_start - part.start:]   # a non-leaf header is copied as is


def storable(message: bytes) -> bytes:
    """A message APPENDed in a literal8 (CRLF lines), with every leaf that is not lines
    (declared binary, or holding a NUL or a lone CR or LF) turned into base64."""
    out: list[bytes] = []
    _rebuild(mime.Part(message, 0, len(message)), out, _storable_leaf)
    return b"".join(out)


def _rebuild(part: mime.Part, out: list[bytes], leaf) -> None:
    """The bytes of part, each leaf as leaf(part) gives it, everything else copied."""
    data = part.data
    if part.is_multipart:
        kids = part.children
        out.append(data[part.start:kids[0].start])
        for kid, nxt in zip(kids, kids[1:] + [None]):
            _rebuild(kid, out, leaf)
            out.append(data[kid.end:nxt.start if nxt is not None else part.end])
    elif (inner := part.message) is not None:
        out.append(data[part.start:inner.start])
        _rebuild(inner, out, leaf)
        out.append(data[inner.end:part.end])
    else:
        out.append(leaf(part))


def _decode_leaf(part: mime.Part) -> bytes:
    if encoding(part) in IDENTITY or part.body_start >= part.end:
        return part.data[part.start:part.end]
    return with_encoding(part.header_bytes(), b"binary") + decoded_body(part)


def _storable_leaf(part: mime.Part) -> bytes:
    body = part.body_bytes()
    enc = encoding(part)
    if not body or part.type in ("multipart", "message") or not (
            enc == b"binary" or (enc in IDENTITY and (b"\0" in body or _BARE_LINE_END.search(body)))):
        return part.data[part.start:part.end]
    lines = [base64.b64encode(body[i:i + BASE64_LINE]) for i in range(0, len(body), BASE64_LINE)]
    return with_encoding(part.header_bytes(), b"base64") + b"\r\n".join(lines)


def with_encoding(header: bytes, value: bytes) -> bytes:
    """A header block (its fields and the blank line) with its Content-Transfer-Encoding
    field set to value: the first such field replaced, or one added at the end."""
    field = b"Content-Transfer-Encoding: " + value + b"\r\n"
    fields = header[:-2]        # a part with a body: its header ends in a blank line
    m = _CTE_FIELD.search(fields)
    while m is not None and m.start() and fields[m.start() - 2:m.start()] != b"\r\n":
        m = _CTE_FIELD.search(fields, m.end())        # a match inside another field
    if m is None:
        return fields + field + b"\r\n"
    end = m.end()
    while True:                                       # the field with its folded lines
        eol = fields.find(b"\r\n", end)
        if eol < 0:
            end = len(fields)
            break
        end = eol + 2
        if fields[end:end + 1] not in (b" ", b"\t"):
            break
    return fields[:m.start()] + field + fields[end:] + b"\r\n"
