"""Storage faults: a full disk (ENOSPC), a used-up disk quota (EDQUOT), a read-only file
system (EROFS). They are conditions of the machine, not bugs: each protocol answers them
with one fixed reply (never a path), the CLI with one line naming the file, and the
server goes on serving reads. This module is the one place that tells them apart.

StorageError is both a MailError (the CLI prints it on one line, exit 1) and an OSError
with the errno kept, so code that already handles OSError (or checks e.errno) still does.
"""
from __future__ import annotations

import contextlib
import errno
import os

from .errors import MailError

FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
READ_ONLY = frozenset({errno.EROFS})

_PROBLEM = {
    errno.ENOSPC: "no space left on the device; free some space and try again",
    errno.EDQUOT: "disk quota exceeded; free some space or raise the quota and try again",
    errno.EROFS: "the file system is read-only; remount it read-write and try again",
}

# Dovecot's text for space (MAIL_ERRSTR_NO_SPACE). IMAP adds a response code (RFC 5530),
# POP3 RFC 3206's [SYS/TEMP]: the client may try again later.
NO_SPACE = "Not enough disk space"
NO_WRITES = "Mail storage is read-only, try again later"


class StorageError(MailError, OSError):
    """A write that failed because the storage is full or read-only."""

    def __init__(self, code: int, path: str | os.PathLike | None = None):
        OSError.__init__(self, code, os.strerror(code), None if path is None else str(path))

    @property
    def full(self) -> bool:
        return self.errno in FULL

    @property
    def public(self) -> str:
        """What a network client is told (errors.client_text): never the file."""
        return reason(self)

    def __str__(self) -> str:
        problem = _PROBLEM[self.errno]
        return f"{self.filename}: {problem}" if self.filename else problem


def is_storage_fault(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (FULL | READ_ONLY)


def as_storage_error(e: OSError, path: str | os.PathLike | None = None) -> StorageError:
    """The StorageError for a storage fault, naming `path` (else the file the OSError names)."""
    if isinstance(e, StorageError) and path is None:
        return e
    return StorageError(e.errno, path if path is not None else e.filename)


@contextlib.contextmanager
def storage_faults(path: str | os.PathLike):
    """Turn a storage fault inside the block into a StorageError naming `path` (the file
    the user knows, rather than a temp file beside it); other errors pass unchanged."""
    try:
        yield
    except OSError as e:
        if not is_storage_fault(e) or isinstance(e, StorageError):
            raise
        raise as_storage_error(e, path) from None


def reason(e: BaseException) -> str | None:
    """What a client is told of a storage fault (never a path); None for other errors."""
    if not is_storage_fault(e):
        return None
    return NO_SPACE if e.errno in FULL else NO_WRITES


def imap_text(e: BaseException) -> str | None:
    """The text after `NO` for a storage fault, None for anything else."""
    text = reason(e)
    if text is None:
        return None
    return ("[OVERQUOTA] " if e.errno in FULL else "[UNAVAILABLE] ") + text


@contextlib.contextmanager
def tolerate_storage_faults():
    """For bookkeeping after the real change is done (a uidlist record of a removed file,
    a quota delta, a subscription): on a full or read-only disk it is skipped, because
    the next writer that has room puts it right, and failing would report a change that
    did happen as not done."""
    try:
        yield
    except OSError as e:
        if not is_storage_fault(e):
            raise
