"""A stored message read in pieces with CRLF line ends, for sending a large message
(IMAP FETCH BODY[], POP3 RETR) without holding it whole in memory.

    reader = CrlfReader(open(path, "rb"))
    n = reader.crlf_size()                 # a first pass: the exact size as sent
    while piece := reader.next_piece():    # the same bytes as mime.to_crlf(whole file)
        ...
    reader.close()

The methods block (disk reads): call them through runtime.run_blocking.
"""
from __future__ import annotations

from typing import BinaryIO

from . import memtrim
from .maildir import to_crlf

PIECE = 1024 * 1024


class CrlfReader:
    def __init__(self, f: BinaryIO):
        self.f = f
        self._held_cr = False          # a CR ending the last piece read: it may start a CRLF

    def next_piece(self) -> bytes:
        """The next piece converted (b"" at the end). A CRLF never spans two pieces, so
        converting piece by piece gives what converting the whole file would."""
        while True:
            raw = self.f.read(PIECE)
            data = b"\r" + raw if self._held_cr else raw
            self._held_cr = bool(raw) and data.endswith(b"\r")     # more may follow
            if self._held_cr:
                data = data[:-1]
            if data or not raw:
                break
        return to_crlf(data)

    def crlf_size(self) -> int:
        """The size of the whole converted message; the file is then read again from the start."""
        self.f.seek(0)
        total = 0
        while piece := self.next_piece():
            total += len(piece)
        self.f.seek(0)
        self._held_cr = False
        return total

    def close(self) -> None:
        self.f.close()


def top(f: BinaryIO, lines: int) -> bytes:
    """POP3 TOP: the header, the blank line and the first `lines` lines of the body (CRLF),
    reading no further into the file than that."""
    reader = CrlfReader(f)
    data = b""
    while piece := reader.next_piece():
        data += piece
        end = data.find(b"\r\n\r\n")
        if end >= 0 and data.count(b"\r\n", end + 4) >= lines:
            break
    head, sep, body = data.partition(b"\r\n\r\n")
    return head + (b"\r\n\r\n" + b"\r\n".join(body.split(b"\r\n")[:lines]) if sep else b"")


def dot_stuff(piece: bytes, at_line_start: bool) -> bytes:
    """POP3/SMTP transparency (RFC 1939 §3): a line that starts with "." gets another one.
    at_line_start: the previous piece ended with a line end (or this is the first)."""
    if at_line_start and piece.startswith(b"."):
        piece = b"." + piece
    return piece.replace(b"\r\n.", b"\r\n..")


async def send_dot_stuffed(run, f: BinaryIO, first_line, send) -> None:
    """A POP3 multi-line answer from a file, in pieces: first_line(size) (the size in CRLF
    octets), the message dot-stuffed, and the final "." line. run: runtime.run_blocking;
    send: an async function that writes and drains."""
    reader = CrlfReader(f)
    try:
        size = await run(reader.crlf_size)
        memtrim.note(size)
        await send(first_line(size))
        at_line_start, last = True, b"\r\n"
        while piece := await run(reader.next_piece):
            await send(dot_stuff(piece, at_line_start))
            at_line_start, last = piece.endswith(b"\n"), piece
        await send(b".\r\n" if last.endswith(b"\r\n") else b"\r\n.\r\n")
    finally:
        reader.close()
