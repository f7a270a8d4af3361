"""Reading the DATA section: streamed in large chunks (not line by line, so a 50 MB
message does not hold the event loop), ended only by <CRLF>.<CRLF>, bounded in size, and
checked for bare CR / bare LF (SMTP smuggling, CVE-2023-51764 family).

A message with a bare CR or LF is rejected, but read to its real end first, so the
session stays in sync and nothing inside it is ever taken for a command (as Mox does).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

END = b"\r\n.\r\n"
CHUNK = 256 * 1024


@dataclass
class DataResult:
    content: bytes | None       # unstuffed message with CRLF line ends; None when too big
    size: int                   # bytes received (before unstuffing)
    too_big: bool
    bare_cr: bool = False
    bare_lf: bool = False


async def read_data(reader: asyncio.StreamReader, limit: int) -> DataResult:
    """Read up to <CRLF>.<CRLF>; anything after it (pipelined commands) stays in the reader."""
    buf = bytearray(b"\r\n")         # the CRLF that ended the DATA command line
    scanned = 0
    dropped = 0                      # bytes discarded once over the limit
    too_big = False
    while True:
        chunk = await reader.read(CHUNK)
        if not chunk:
            raise ConnectionResetError("connection closed during DATA")
        buf += chunk
        idx = buf.find(END, max(scanned - len(END), 0))
        if idx >= 0:
            rest = bytes(buf[idx + len(END):])
            if rest:
                # give back what follows the end of data; it belongs to the next command
                reader._buffer[0:0] = rest          # type: ignore[attr-defined]
            del buf[idx + 2:]
            size = dropped + len(buf) - 2
            if too_big or (limit and size > limit):
                return DataResult(None, size, True)
            return finish(buf, size)
        if limit and dropped + len(buf) - 2 > limit:
            # over the limit: keep reading to the end, keep only a tail to find it
            too_big = True
            keep = len(END)
            dropped += len(buf) - keep
            del buf[:-keep]
        scanned = len(buf)


def finish(buf: bytearray, size: int) -> DataResult:
    """buf holds CRLF + the raw DATA lines (each ending CRLF). Check and unstuff."""
    crlf = buf.count(b"\r\n")
    bare_cr = buf.count(b"\r") != crlf
    bare_lf = buf.count(b"\n") != crlf
    # RFC 5321 §4.5.2: a leading dot on any line is removed
    content = bytes(buf).replace(b"\r\n.", b"\r\n")[2:] if b"\r\n." in buf else bytes(buf[2:])
    return DataResult(content, size, False, bare_cr, bare_lf)


def fix_bare_newlines(content: bytes) -> bytes:
    """For trusted clients allowed bare LF: make every line end CRLF."""
    return content.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def header_block(content: bytes) -> bytes:
    end = content.find(b"\r\n\r\n")
    return content[:end + 2] if end >= 0 else content[:65536]
