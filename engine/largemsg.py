"""A received message too large to hold in memory (SMTP DATA of megabytes): its head in
memory (header checks and added header lines work on it), the rest in an anonymous file
that disappears when closed, or with the process, so nothing is ever left behind.

    message = LargeMessage.create(directory)
    message.append(piece) ...                # blocking writes
    message.head = ...                       # the first bytes, header included
    for piece in message: ...                # head, then the file, in 1 MB pieces
    stage_into(maildir, prefix, message)     # into tmp/ with LF line ends, counted on the way
    message.close()
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from . import nofollow
from .foldernames import INBOX
from .errors import NotFound
from .spool import Spool

PIECE = 1024 * 1024


class LargeMessage:
    def __init__(self, fd: int, head: bytes = b""):
        self.fd = fd
        self.head = head                     # CRLF bytes before what the file holds
        self.file_size = 0

    @classmethod
    def create(cls, directory: Path) -> "LargeMessage":
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError as e:                  # a file system without O_TMPFILE
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            fd, name = tempfile.mkstemp(dir=directory, prefix=".large-")
            os.unlink(name)
        return cls(fd)

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, self.file_size)
            self.file_size += written
            view = view[written:]

    def __len__(self) -> int:
        return len(self.head) + self.file_size

    def __iter__(self):
        yield self.head
        pos = 0
        while pos < self.file_size:
            piece = os.pread(self.fd, min(PIECE, self.file_size - pos), pos)
            if not piece:
                raise OSError(errno.EIO, "spooled message shorter than written")
            pos += len(piece)
            yield piece

    def read_all(self) -> bytes:
        return b"".join(self)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def stage_into(box, prefix: bytes, message: LargeMessage, assign_uid: bool = True,
               quota_bytes: int | None = None, folder: str = INBOX):
    """Maildir.stage for a LargeMessage: prefix + message, written in pieces to the
    mailbox's tmp/ with LF line ends, then staged from there (no copy in memory)."""
    try:
        nofollow.check_folder(box.top, box.path)    # no link on the way (LinkRefused: missing)
        spool = Spool(box.path / "tmp")
    except FileNotFoundError:
        raise NotFound(f"{box.path}: no such mailbox") from None
    try:
        spool.write(prefix)
        for piece in message:
            spool.write(piece)
        spool.finish()
        staged = box.stage_file(spool.path, spool.size, spool.vsize, folder, quota_bytes=quota_bytes)
    except BaseException:
        spool.discard()
        raise
    staged.assign_uid = assign_uid
    return staged


def close_quietly(message) -> None:
    if isinstance(message, LargeMessage):
        with contextlib.suppress(OSError):
            message.close()
