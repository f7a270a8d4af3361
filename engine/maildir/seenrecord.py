"""A user's own \\Seen on a folder somebody else owns (a shared or public folder), as
Dovecot keeps private flags with INDEXPVT: one small file per user in the folder,
`mailctl-seen.<hash of the address>` (no address in a file name), beside the folder's
other mailctl- files, so it is renamed and deleted with the folder, survives restarts and
is read by every serving process.

Format: the line "mailctl-seen 1 <uidvalidity>", then one line of UID ranges, e.g.
"1:40,42,45:60". A range may span expunged UIDs (pruned at each write against the
uidlist: only live UIDs count, runs of seen live messages become one range), so the
file stays a few bytes however many messages are seen. Written as a whole (temp file +
rename) under an flock of `mailctl-seen.<hash>.lock`; a missing, damaged, oversized or
foreign (other UIDVALIDITY) file reads as "nothing seen" and is made anew at the next
change. Ranges are never expanded into sets: a hostile "1:4294967295" costs nothing.
"""
from __future__ import annotations

import bisect
import fcntl
import hashlib
import logging
import os
import threading
from pathlib import Path

from .. import nofollow
from .names import FILE_MODE

PREFIX = "mailctl-seen."
MAGIC = "mailctl-seen 1"
MAX_BYTES = 1 << 20          # a record larger than this is damaged (ranges stay small)
MAX_UID = 2**32 - 1

log = logging.getLogger(__name__)


class SeenSet:
    """UID ranges, sorted and disjoint; membership by bisection."""
    __slots__ = ("starts", "ends")

    def __init__(self, ranges=()):
        merged: list[list[int]] = []
        for a, b in sorted(ranges):
            if merged and a <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.starts = [a for a, _ in merged]
        self.ends = [b for _, b in merged]

    def __contains__(self, uid: int) -> bool:
        i = bisect.bisect_right(self.starts, uid) - 1
        return i >= 0 and uid <= self.ends[i]

    def __bool__(self) -> bool:
        return bool(self.starts)

    def text(self) -> str:
        return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in zip(self.starts, self.ends))


def file_name(user: str) -> str:
    return PREFIX + hashlib.sha256(user.lower().encode()).hexdigest()[:24]


def parse(data: bytes, uidvalidity: int) -> SeenSet | None:
    """The seen set of a record's text; None when damaged or of another UIDVALIDITY."""
    try:
        lines = data.decode("ascii").split("\n")
        head = lines[0].split()
        if len(head) != 3 or " ".join(head[:2]) != MAGIC or int(head[2]) != uidvalidity:
            return None
        ranges = []
        body = lines[1].strip() if len(lines) > 1 else ""
        for part in filter(None, body.split(",")):
            a, _, b = part.partition(":")
            lo, hi = int(a), int(b or a)
            if not 0 < lo <= hi <= MAX_UID:
                return None
            ranges.append((lo, hi))
        return SeenSet(ranges)
    except (UnicodeDecodeError, ValueError, IndexError):
        return None


_CACHE: dict[str, tuple[tuple, SeenSet]] = {}     # path -> (stat signature, set)
_CACHE_LOCK = threading.Lock()


def signature(folder_path: Path, user: str):
    """What stat() says of the record (None: none): a session's stamp includes it, so a
    change by another session of the user shows at its next poll."""
    try:
        st = os.lstat(folder_path / file_name(user))
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def read(folder_path: Path, user: str, uidvalidity: int) -> SeenSet:
    """The user's seen set on the folder; empty when there is none or it is damaged."""
    path = folder_path / file_name(user)
    sig = signature(folder_path, user)
    if sig is None:
        return SeenSet()
    key = str(path)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None and cached[0] == (sig, uidvalidity):
        return cached[1]
    seen = None
    if sig[1] <= MAX_BYTES:
        try:
            seen = parse(nofollow.read_bytes(path, quiet=True), uidvalidity)
        except OSError:
            seen = None
    if seen is None:
        log.warning("a private \\Seen record in a shared folder is damaged or stale; read as empty")
        seen = SeenSet()
    with _CACHE_LOCK:
        if len(_CACHE) > 10000:
            _CACHE.clear()
        _CACHE[key] = ((sig, uidvalidity), seen)
    return seen


def update(folder_path: Path, user: str, uidvalidity: int, changes: dict[int, bool], live_uids) -> SeenSet:
    """Set (True) or clear (False) \\Seen of these UIDs, against the record as it is now
    (another process's change meanwhile is kept); live_uids() gives the folder's UIDs
    now, to prune the expunged. Returns the new set."""
    lock_fd = nofollow.open_file(folder_path / (file_name(user) + ".lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        old = read(folder_path, user, uidvalidity)
        live = sorted(live_uids())
        runs: list[tuple[int, int]] = []
        start = prev = None
        for uid in live:
            seen = changes.get(uid)
            if seen is None:
                seen = uid in old
            if seen:
                if start is None:
                    start = uid
                prev = uid
            elif start is not None:
                runs.append((start, prev))
                start = None
        if start is not None:
            runs.append((start, prev))
        new = SeenSet(runs)
        data = f"{MAGIC} {uidvalidity}\n{new.text()}\n".encode()
        path = folder_path / file_name(user)
        tmp = folder_path / (file_name(user) + f".tmp{os.getpid()}.{threading.get_ident()}")
        fd = nofollow.open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        return new
    finally:
        os.close(lock_fd)
