"""What the Sieve duplicate test (RFC 7352) remembers: for one mailbox, the unique ids
(a Message-ID, another header's value, or :uniqueid) of messages it saw, per :handle, each
for its period.

    state/duplicates/<sha256 of "mailbox NUL handle NUL id">     its mtime: when the period ends

The test claims an id when it looks (under one lock, run/locks/duplicate.lock): of two
copies of one message delivered at once by two serving processes exactly one is "new".
RFC 7352 records an id when the script completes; claiming at the test differs only when
the script then fails, and the message goes to INBOX then anyway. Expired records are
removed at most hourly.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import time

from .. import nofollow

DIRNAME = "duplicates"
DEFAULT_SECONDS = 7 * 86400          # Pigeonhole's sieve_duplicate_max_period; its default period is longer
MAX_SECONDS = 7 * 86400
PRUNE_EVERY_S = 3600
_pruned = [0.0]


class DuplicateStore:
    def __init__(self, root, mailbox: str):
        self.root, self.mailbox = root, mailbox.lower()

    def seen(self, handle: str, unique: str, seconds: int | None, last: bool, now: float | None = None) -> bool:
        """Was unique seen within its period? Either way it is remembered from now on (with
        :last, a sighting also starts its period again)."""
        now = time.time() if now is None else now
        period = min(MAX_SECONDS, DEFAULT_SECONDS if seconds is None else max(0, seconds))
        key = "\0".join((self.mailbox, handle, unique)).encode("utf-8", "surrogateescape")
        folder = self.root.state_dir / DIRNAME
        path = folder / hashlib.sha256(key).hexdigest()
        with self.root.lock("duplicate", timeout=30):
            folder.mkdir(mode=0o700, exist_ok=True)
            nofollow.check_dirs(self.root.path, folder)
            try:
                found = os.lstat(path).st_mtime > now
            except FileNotFoundError:
                found = False
            if not found or last:
                os.close(nofollow.open_file(path, os.O_WRONLY | os.O_CREAT, 0o600, quiet=True))
                os.utime(path, (now, now + period), follow_symlinks=False)
            if now - _pruned[0] > PRUNE_EVERY_S:
                _pruned[0] = now
                _prune(folder, now)
        return found


def _prune(folder, now: float) -> None:
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for e in entries:
            with contextlib.suppress(OSError):
                if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime <= now:
                    os.unlink(e.path)
