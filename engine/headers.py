"""Header fields a submission server adds when the client left them out (RFC 6409 §8.2,
§8.3), as Postfix's cleanup does for local and submitted mail."""
from __future__ import annotations

import email.utils
import re
import secrets
import time

_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


def names_in(header_block: bytes) -> set[str]:
    """Lower-case field names of a header block."""
    return {m.group(1).decode("ascii", "replace").lower() for m in _NAME.finditer(header_block)}


def field_values(header_block: bytes, name: str) -> list[str]:
    """The values of every field called name (any case), unfolded, top first; bytes that
    are not UTF-8 become U+FFFD. A line neither a field nor a continuation is skipped."""
    wanted = name.lower().encode()
    out: list[str] = []
    current: list[bytes] | None = None
    for line in header_block.split(b"\n"):
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current.append(line)
            continue
        if current is not None:
            out.append(b"".join(current).strip().decode("utf-8", "replace"))
            current = None
        field, colon, value = line.partition(b":")
        if colon and field.rstrip(b" \t").lower() == wanted:
            current = [value]
    if current is not None:
        out.append(b"".join(current).strip().decode("utf-8", "replace"))
    return out


def missing(names: set[str], hostname: str, now: float | None = None) -> list[bytes]:
    """Date and Message-ID lines (no line end) for those not in names."""
    now = time.time() if now is None else now
    out = []
    if "date" not in names:
        out.append(f"Date: {email.utils.formatdate(now, localtime=True)}".encode())
    if "message-id" not in names:
        out.append(f"Message-ID: <{int(now)}.{secrets.token_hex(8)}@{hostname}>".encode())
    return out
