"""A message that arrives in pieces (an IMAP APPEND literal), written to a file as it comes,
so a message of any size costs one bounded buffer instead of copies in memory.

    spool = Spool(maildir.path / "tmp")     # same file system as every folder of the account
    spool.write(piece) ...                   # CRLF becomes LF (Maildir files use LF), unless
                                             # Spool(..., exact=True): a literal8's bytes as they came
    spool.finish()                           # fsync'd; spool.size, spool.vsize as Maildir names want
    maildir.stage_file(spool.path, spool.size, spool.vsize, folder).commit()
    spool.discard()                          # whenever it was not staged: nothing stays in tmp/

The methods block (disk writes): call them through runtime.run_blocking.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from . import uniquenames

FILE_MODE = 0o600


class Spool:
    def __init__(self, directory: Path, exact: bool = False):
        self.exact = exact       # a literal8 (RFC 3516): its bytes kept as they came, not made lines
        self.path = Path(directory) / f"{int(time.time())}.P{uniquenames.pid()}R{uniquenames.random_hex(8)}.spool"
        self.fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        self.size = 0            # bytes in the file (LF line ends)
        self.vsize = 0           # the same with every LF counted as CRLF (RFC822.SIZE)
        self._cr_held = False    # a CR at the end of the last piece: it may start a CRLF
        self._last = b""         # the last byte written (a CRLF may span two writes)

    def write(self, piece: bytes) -> None:
        if self.exact:
            self.size += len(piece)
            self.vsize = self.size
            self._write_all(piece)
            return
        if self._cr_held:
            piece = b"\r" + piece
            self._cr_held = False
        if piece.endswith(b"\r"):
            piece = piece[:-1]
            self._cr_held = True
        self._put(piece.replace(b"\r\n", b"\n"))

    def _put(self, data: bytes) -> None:
        if not data:
            return
        # what stays a CRLF in the file ("\r\r\n" becomes "\r\n") counts as one line end
        crlf = data.count(b"\r\n") + (self._last == b"\r" and data[:1] == b"\n")
        self.vsize += len(data) + data.count(b"\n") - crlf
        self.size += len(data)
        self._last = data[-1:]
        self._write_all(data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def finish(self) -> None:
        """Everything written is on disk (fsync'd) and the file is closed."""
        if self._cr_held:
            self._cr_held = False
            self._put(b"\r")
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = None

    def discard(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
