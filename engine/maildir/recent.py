"""Which messages are \\Recent: RFC 3501 §2.3.2 gives each message the flag in exactly
one session, the first that sees it, whichever way it arrived (delivered into new/,
or COPY, MOVE or APPEND straight into cur/).

A folder's mailctl-recent holds "<uidvalidity> <uid>": the highest UID a session has
already claimed. A session that sees UIDs above it for the first time takes them as its
recent ones and writes its highest UID, under flock() of the file, so of two sessions
(in one serving process or two) exactly one gets each message. A read-only (EXAMINE)
session claims nothing: messages above the number are recent to it and stay so for the
next session that selects the folder.

Without the file (or with another UIDVALIDITY's), a folder no session of ours has
selected since, the messages in new/ are the recent ones, as they were before the file
existed and as Dovecot, which keeps its own count in its index and ignores this file,
treats delivered mail. So a session that is about to put messages straight into cur/
of such a folder (APPEND with flags, COPY, MOVE) first writes the file (open_claims):
what is there already is claimed, except what waits in new/, and its messages, whose
UIDs come later, are recent to the first session to select the folder. Imports and
restores write no file: they bring old mail, which the new/ rule leaves alone.
"""
from __future__ import annotations

import bisect
import fcntl
import operator
import os
from pathlib import Path
from typing import Callable, Sequence

from .. import nofollow
from ..storage_errors import is_storage_fault
from .message import Message
from .names import FILE_MODE, RECENT_CLAIMS

_UID = operator.attrgetter("uid")


def claim(folder_path: Path, uidvalidity: int, fresh: Sequence[Message], top: int, write: bool) -> set[int]:
    """The UIDs of fresh (messages a session sees for the first time, in UID order)
    that are recent to it. top: the highest UID the session knows now. write: record
    them as claimed, so no other session takes them (a read-write session)."""
    path = folder_path / RECENT_CLAIMS
    try:
        fd = nofollow.open_file(path, (os.O_RDWR | os.O_CREAT) if write else os.O_RDONLY, FILE_MODE)
    except FileNotFoundError:              # read-only and no file, or a link (LinkRefused)
        return _recent(fresh, None)
    except OSError as e:
        if not (is_storage_fault(e) or isinstance(e, PermissionError)):
            raise
        # A read-only disk or folder: claim nothing, and SELECT still works.
        return _recent(fresh, _read_floor(path, uidvalidity))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        floor = _parse(os.pread(fd, 64, 0), uidvalidity)
        if write and (floor is None or top > floor):
            text = f"{uidvalidity} {max(top, floor or 0)}\n".encode()
            try:
                os.pwrite(fd, text, 0)
                os.ftruncate(fd, len(text))
            except OSError as e:           # a full disk: recent to us, and maybe to another
                if not is_storage_fault(e):
                    raise
        return _recent(fresh, floor)
    finally:
        os.close(fd)                        # and the lock with it


def open_claims(folder_path: Path, uidvalidity: int, floor_now: Callable[[], int]) -> None:
    """Before messages go straight into cur/ of a folder: when it has no claims (for this
    UIDVALIDITY), write them, claiming up to floor_now() (called under the lock: the
    highest UID given out that is neither in new/ nor above one that is)."""
    path = folder_path / RECENT_CLAIMS
    if _read_floor(path, uidvalidity) is not None:
        return                              # the common case: one open and read
    try:
        fd = nofollow.open_file(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except FileNotFoundError:               # a link (LinkRefused)
        return
    except OSError as e:
        if not (is_storage_fault(e) or isinstance(e, PermissionError)):
            raise
        return                              # a read-only disk: the new/ rule stays
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _parse(os.pread(fd, 64, 0), uidvalidity) is not None:
            return                          # a session selected the folder meanwhile
        text = f"{uidvalidity} {floor_now()}\n".encode()
        try:
            os.pwrite(fd, text, 0)
            os.ftruncate(fd, len(text))
        except OSError as e:                # a full disk: the new/ rule stays
            if not is_storage_fault(e):
                raise
    finally:
        os.close(fd)


def count(folder_path: Path, uidvalidity: int, msgs: Sequence[Message]) -> int:
    """How many of a folder's messages (in UID order) the next session to select it
    would see as recent (STATUS)."""
    return len(_recent(msgs, _read_floor(folder_path / RECENT_CLAIMS, uidvalidity)))


def _read_floor(path: Path, uidvalidity: int) -> int | None:
    try:
        fd = nofollow.open_file(path)
    except (FileNotFoundError, PermissionError):     # or a link (LinkRefused)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return _parse(os.pread(fd, 64, 0), uidvalidity)
    finally:
        os.close(fd)


def _parse(data: bytes, uidvalidity: int) -> int | None:
    """The claimed UID in the file's text; None when missing, garbled or of another
    UIDVALIDITY (the UIDs were given out again: the old number means nothing)."""
    parts = data.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) != uidvalidity:
        return None
    return int(parts[1])


def _recent(fresh: Sequence[Message], floor: int | None) -> set[int]:
    if floor is None:
        return {m.uid for m in fresh if m.subdir == "new"}
    # In UID order: a SELECT of 100,000 messages, none of them new, looks at none.
    return {m.uid for m in fresh[bisect.bisect_right(fresh, floor, key=_UID):]}
