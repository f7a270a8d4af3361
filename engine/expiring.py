"""Marks that last for a period, one small file each under state/<kind>/, shared by every
serving process: whom a vacation action answered (engine/accept/autoreply.py), which
message ids the Sieve duplicate test saw (engine/sieve/duplicates.py).

    state/<kind>/<sha256 of the key parts joined by NUL>     its mtime: when the period ends

Looking and marking are one step under one lock (run/locks/<kind>.lock), so two serving
processes asking about one key at once get one "new" between them. Marks past their
period are removed at most hourly, by whoever marks next.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import time

from . import nofollow

PRUNE_EVERY_S = 3600
_pruned: dict[str, float] = {}


def seen_or_mark(root, kind: str, parts: tuple[str, ...], seconds: float, refresh: bool = False,
                 now: float | None = None) -> bool:
    """Is the key marked and within its period? When it is not (or with refresh, in any
    case), it is marked from now for seconds."""
    now = time.time() if now is None else now
    key = "\0".join(parts).encode("utf-8", "surrogateescape")
    folder = root.state_dir / kind
    path = folder / hashlib.sha256(key).hexdigest()
    with root.lock(kind, timeout=30):
        folder.mkdir(mode=0o700, exist_ok=True)
        nofollow.check_dirs(root.path, folder)
        try:
            found = os.lstat(path).st_mtime > now
        except FileNotFoundError:
            found = False
        if not found or refresh:
            os.close(nofollow.open_file(path, os.O_WRONLY | os.O_CREAT, 0o600, quiet=True))
            os.utime(path, (now, now + seconds), follow_symlinks=False)
        if now - _pruned.get(kind, 0.0) > PRUNE_EVERY_S:
            _pruned[kind] = now
            _prune(folder, now)
    return found


def _prune(folder, now: float) -> None:
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for e in entries:
            with contextlib.suppress(OSError):
                if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime <= now:
                    os.unlink(e.path)
