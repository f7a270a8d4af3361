"""Reading the DATA section: streamed in large chunks (not line by line, so a 50 MB
message does not hold the event loop), ended only by <CRLF>.<CRLF>, bounded in size, and
checked for bare CR / bare LF (SMTP smuggling, CVE-2023-51764 family).

A message with a bare CR or LF is rejected, but read to its real end first, so the
session stays in sync and nothing inside it is ever taken for a command (as Mox does).

Mended instead (relay.bare_newline, decided per client by mends_bare_lf): a bare LF inside
the content becomes CRLF, as Postfix 3.9's smtpd_forbid_bare_newline = normalize does for
scripts and `curl --upload-file` of a Unix text file. What stays refused from every client:
a bare CR, and a lone "." line next to a bare LF (\n.\n, \r\n.\n, \n.\r\n: the
end-of-data variants of smuggling, which never end DATA here). Dot-stuffing is an SMTP
line's (RFC 5321 §4.5.2: lines end in CRLF), so a dot after a bare LF is content and kept:
clients that send bare LF do not stuff after it (curl 7.88 sends an LF-only ".x" line as
it is), and removing it would eat the sender's text.
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
    bare_lf: bool = False       # a bare LF that was not mended (refused)
    mended: bool = False        # bare LFs were made CRLF (mend_lf)
    offset: int = 0             # where the message starts in content (after the prefix)
    error: OSError | None = None    # the spill file could not be written (a full disk)


async def read_data(reader: asyncio.StreamReader, limit: int, prefix: bytes = b"",
                    spill_dir: Path | None = None, run=None, mend_lf: bool = False) -> DataResult:
    """Read up to <CRLF>.<CRLF>; anything after it (pipelined commands) stays in the reader.

    Complete lines are checked and unstuffed as each chunk arrives, so no step ever
    works on the whole message at once (the event loop stays responsive). With spill_dir
    (and run, the runtime's run_blocking), a message past SPILL_FROM goes on into an
    anonymous file there as it arrives: memory stays bounded for any size.

    mend_lf: a bare LF in the content becomes CRLF (see the module's docstring). Input is
    then cut after its last LF rather than its last CRLF, so an LF-only message is
    processed (and spilled) as it arrives, and a CR that ends one chunk meets the LF that
    starts the next before anything is decided about it."""
    out = bytearray(prefix)
    large: LargeMessage | None = None
    error: OSError | None = None
    try:
        buf = bytearray(b"\r\n")         # unprocessed input; always starts with the line end before it
        size = 0
        bare_cr = bare_lf = too_big = mended = False
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
            elif mend_lf:
                last = buf.rfind(b"\n")
                upto = last + 1 if last >= 2 else 0
            else:
                last = buf.rfind(b"\r\n")
                upto = last + 2 if last >= 2 else 0
            if upto > 2:
                region = buf[:upto]             # the line end before + complete lines
                size += upto - 2
                if mend_lf:
                    # region[:2] is "\r\n", or "?\n" after a bare LF: count only what is new
                    region, had_bare_lf, smuggled, crs = mended_lines(region)
                    mended = mended or had_bare_lf
                    bare_lf = bare_lf or smuggled
                    bare_cr = bare_cr or crs
                else:
                    crlf = region.count(b"\r\n")
                    bare_cr = bare_cr or region.count(b"\r") != crlf
                    bare_lf = bare_lf or region.count(b"\n") != crlf
                if limit and size > limit:
                    too_big = True
                if not too_big and error is None:
                    out += region[2:] if mend_lf else unstuffed(region)[2:]
                else:
                    out.clear()
                del buf[:upto - 2]              # keep the last line end as the start of what follows
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
                result = DataResult(large or out, size, False, bare_cr, bare_lf, mended, len(prefix))
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


def unstuffed(region) -> bytes:
    """RFC 5321 §4.5.2: the leading dot of every line is removed (region starts with the
    CRLF before its first line)."""
    return region.replace(b"\r\n.", b"\r\n") if b"\r\n." in region else region


def mended_lines(region) -> tuple[bytes, bool, bool, bool]:
    """Complete lines read with bare LF mended: (the line end before + the lines unstuffed
    and with every bare LF made CRLF, whether there was a bare LF, whether a lone "." line
    touches one (smuggling), whether there was a bare CR).

    region[:2] is the line end before the lines: "\r\n", or "?\n" after a bare LF; a CR
    before a bare LF would have made it CRLF, so region[2:] holds every byte to judge."""
    crlf = region.count(b"\r\n", 2)
    bare_cr = region.count(b"\r", 2) != crlf
    if region.count(b"\n", 2) == crlf and region[0] == 13:      # no bare LF, none just before
        return unstuffed(region), False, False, bare_cr
    smuggled = _lone_dot_by_bare_lf(region)
    # unstuff first (only after a real CRLF), then mend: a dot after a bare LF is content
    return b"\r\n" + _crlf(unstuffed(region)[2:]), True, smuggled, bare_cr


def _lone_dot_by_bare_lf(region) -> bool:
    """Whether "." stands alone on a line that a bare LF ends or begins: \n.\n (after CRLF
    or LF), or \n.\r\n with no CR before its first LF. Literal searches, not a regular
    expression: a tenth of the time on LF-only text, where every LF is a candidate."""
    if b"\n.\n" in region:
        return True
    at = region.find(b"\n.\r\n")
    while at >= 0:
        if at == 0 or region[at - 1] != 13:
            return True
        at = region.find(b"\n.\r\n", at + 1)     # (a <CRLF>.<CRLF> here would have ended DATA)
    return False


def _crlf(data) -> bytes:
    """Every bare LF made CRLF; CRLF and bare CR left as they are."""
    return bytes(data).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def mends_bare_lf(mode: str, authenticated: bool, trusted: bool) -> bool:
    """relay.bare_newline for one client: whether its bare LFs are mended (else refused)."""
    return mode == "normalize" or (mode == "normalize_trusted" and (authenticated or trusted))


def head_of(content) -> bytes:
    """The part of a message that holds its header: all of it, unless it is a LargeMessage."""
    return content.head if isinstance(content, LargeMessage) else content


def header_block(content, offset: int = 0) -> bytes:
    content = head_of(content)
    end = content.find(b"\r\n\r\n", offset, offset + 1024 * 1024)
    return bytes(content[offset:end + 2] if end >= 0 else content[offset:offset + 65536])
