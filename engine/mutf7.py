"""IMAP modified UTF-7 (RFC 3501 §5.1.3), the encoding of folder names on disk.

Printable ASCII stands for itself, "&" is written "&-", everything else is UTF-16BE
in base64 with "," for "/", no padding, between "&" and "-". decode() accepts only
the canonical form, so one folder name has exactly one spelling on disk.
"""
from __future__ import annotations

import base64
import binascii

from .errors import InvalidInput

_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


def _printable(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def encode(name: str) -> str:
    """A Unicode name in modified UTF-7; InvalidInput for what no name may hold (NUL,
    lone surrogates), so that decode(encode(name)) == name for every name encoded."""
    out: list[str] = []
    pending: list[str] = []
    for ch in name:
        if _printable(ch):
            if pending:
                out.append(_encode_run("".join(pending)))
                pending = []
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    if pending:
        out.append(_encode_run("".join(pending)))
    return "".join(out)


def _encode_run(text: str) -> str:
    if "\0" in text:       # decode() refuses it: a name with NUL would have no spelling to read back
        raise InvalidInput(f"{text!r}: NUL is not allowed in a name; use a valid name")
    try:
        raw = text.encode("utf-16-be")
    except UnicodeEncodeError:
        raise InvalidInput(f"{text!r}: not valid Unicode (lone surrogate); use a valid name") from None
    b64 = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
    return f"&{b64}-"


def decode(name: str) -> str:
    """A modified UTF-7 name in Unicode; InvalidInput if it is not canonical mUTF-7."""
    out: list[str] = []
    i = 0
    last_run_end = -1
    while i < len(name):
        ch = name[i]
        if not _printable(ch):
            raise InvalidInput(f"{name!r}: character {ch!r} at {i} is not allowed in modified UTF-7")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise InvalidInput(f"{name!r}: '&' at {i} is not terminated by '-'")
        if end == i + 1:
            out.append("&")
        else:
            if last_run_end == i:
                raise InvalidInput(f"{name!r}: adjacent encoded runs at {i} (not canonical)")
            out.append(_decode_run(name, name[i + 1:end], i))
            last_run_end = end + 1
        i = end + 1
    return "".join(out)


def _decode_run(name: str, run: str, pos: int) -> str:
    bad = set(run) - _B64_ALPHABET
    if bad:
        raise InvalidInput(f"{name!r}: invalid base64 character {sorted(bad)[0]!r} in run at {pos}")
    # Each UTF-16 unit is 16 bits; a valid run leaves fewer than 6 spare bits, all zero.
    nbits = len(run) * 6
    if nbits % 16 >= 6:
        raise InvalidInput(f"{name!r}: truncated base64 run at {pos}")
    padded = run.replace(",", "/") + "=" * (-len(run) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except binascii.Error:
        raise InvalidInput(f"{name!r}: invalid base64 run at {pos}") from None
    raw = raw[: nbits // 16 * 2]
    if base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") != run:
        raise InvalidInput(f"{name!r}: base64 run at {pos} has non-zero padding bits")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError:
        raise InvalidInput(f"{name!r}: run at {pos} is not valid UTF-16 (unpaired surrogate)") from None
    for ch in text:
        if ch == "\0":
            raise InvalidInput(f"{name!r}: run at {pos} encodes NUL")
        if _printable(ch):
            raise InvalidInput(f"{name!r}: run at {pos} encodes printable ASCII {ch!r} "
                               f"(must be written as itself)")
    return text
