"""Reading the DATA section: streamed in large chunks (not line by line, so a 50 MB
message does not hold the event loop), ended only by <CRLF>.<CRLF>, bounded in size, and
checked for bare CR / bare LF (SMTP smuggling, CVE-2023-51764 family).

A message with a bare CR or LF is rejected, but read to its real end first, so the
session stays in sync and nothing inside it is ever taken for a command (as Mox does).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from ..largemsg import LargeMessage, close_quietly

END = b"\r\n.\r\n"
CHUNK = 256 * 1024
SPILL_FROM = 2 * 1024 * 1024     # a message past this goes to a file as it arrives ...
SPILL_WRITE = 1024 * 1024        # ... in writes of this size


@dataclass
class DataResult:
    content: "bytearray | LargeMessage | None"  # prefix + unstuffed message, CRLF; None when refused
    size: int                   # bytes received (before unstuffing)
    too_big: bool
    bare_cr: bool = False
    bare_lf: bool = False
    offset: int = 0             # where the message starts in content (after the prefix)
    error: OSError | None = None    # the spill file could not be written (a full disk)


async def read_data(reader: asyncio.StreamReader, limit: int, prefix: bytes = b"",
                    spill_dir: Path | None = None, run=None) -> DataResult:
    """Read up to <CRLF>.<CRLF>; anything after it (pipelined commands) stays in the reader.

    Complete lines are checked and unstuffed as each chunk arrives, so no step ever
    works on the whole message at once (the event loop stays responsive). With spill_dir
    (and run, the runtime's run_blocking), a message past SPILL_FROM goes on into an
    anonymous file there as it arrives: memory stays bounded for any size."""
    out = bytearray(prefix)
    large: LargeMessage | None = None
    error: OSError | None = None
    try:
        buf = bytearray(b"\r\n")         # unprocessed input; always starts with the CRLF before it
        size = 0
        bare_cr = bare_lf = too_big = False
        while True:
            chunk = await reader.read(CHUNK)
            if not chunk:
                raise ConnectionResetError("connection closed during DATA")
            searched_from = max(len(buf) - len(END) + 1, 0)
            buf += chunk
            idx = buf.find(END, searched_from if searched_from < len(buf) else 0)
            if idx >= 0:
                rest = bytes(buf[idx + len(END):])
                if rest:
                    # give back what follows the end of data; it belongs to the next command
                    reader._buffer[0:0] = rest          # type: ignore[attr-defined]
                upto = idx + 2                  # the message ends with the CRLF before "."
            else:
                last = buf.rfind(b"\r\n")
                upto = last + 2 if last >= 2 else 0
            if upto > 2:
                region = buf[:upto]             # "\r\n" + complete lines
                size += upto - 2
                crlf = region.count(b"\r\n")
                bare_cr = bare_cr or region.count(b"\r") != crlf
                bare_lf = bare_lf or region.count(b"\n") != crlf
                if limit and size > limit:
                    too_big = True
                if not too_big and error is None:
                    # RFC 5321 §4.5.2: a leading dot on any line is removed
                    out += region.replace(b"\r\n.", b"\r\n")[2:] if b"\r\n." in region else region[2:]
                else:
                    out.clear()
                del buf[:upto - 2]              # keep the last CRLF as the start of what follows
            if spill_dir is not None and not too_big and error is None and (
                    len(out) >= (SPILL_FROM if large is None else SPILL_WRITE) or (idx >= 0 and large is not None)):
                try:
                    if large is None:
                        large = await run(LargeMessage.create, spill_dir)
                        large.head = bytes(out)
                    else:
                        await run(large.append, bytes(out))
                except OSError as e:
                    error = e                   # read on to the end, then answer 452
                out.clear()
            if idx >= 0:
                if too_big:
                    return DataResult(None, size, True)
                if error is not None:
                    return DataResult(None, size, False, error=error)
                result = DataResult(large or out, size, False, bare_cr, bare_lf, len(prefix))
                large = None                    # the caller's now
                return result
            if limit and size + len(buf) > limit + 1024 * 1024:
                # a huge line with no end: count it, drop it, keep a tail to find the end marker
                too_big = True
                size += len(buf) - 7
                bare_lf = bare_lf or b"\n" in buf[2:-5]
                del buf[2:-5]
                out.clear()
    finally:
        close_quietly(large)


def fix_bare_newlines(content: bytes) -> bytes:
    """For trusted clients allowed bare LF: make every line end CRLF."""
    return bytes(content).replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def header_block(content: bytes, offset: int = 0) -> bytes:
    end = content.find(b"\r\n\r\n", offset, offset + 1024 * 1024)
    return bytes(content[offset:end + 2] if end >= 0 else content[offset:offset + 65536])
