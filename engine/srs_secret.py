"""The SRS secret: `state/srs.secret` in the root (DESIGN.md: defence state lives under
state/), mode 0600, one secret a line. The first line signs; every line verifies, so a
rotation (`mailctl srs rotate`) puts a new secret first and keeps the old ones while
bounces to addresses made with them may still come back.

Made at `mailctl init`, else at first use. Made in one step (written in full under a
temp name, then linked into place, which fails if another process was first), so two
serving processes never end up with different secrets. Read again when the file changes.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import threading

from .errors import MailError
from .root import Root, atomic_write, fsync_dir, write_temp

FILE_NAME = "srs.secret"
MODE = 0o600
KEEP_OLD = 4                         # secrets kept after a rotation besides the new one

_cache: dict[str, tuple[tuple, tuple[bytes, ...]]] = {}
_lock = threading.Lock()


def path_of(root: Root):
    return root.state_dir / FILE_NAME


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def ensure(root: Root) -> bool:
    """Make the secret file unless it exists. True when this call made it."""
    target = path_of(root)
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = write_temp(target, f"{new_secret()}\n", mode=MODE)
    try:
        os.link(tmp, target)           # never replaces: a secret already in use stays
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(target.parent)
    return True


def parse(text: str) -> tuple[bytes, ...]:
    """The secrets of the file: non-empty lines, '#' starts a comment line."""
    lines = (line.strip() for line in text.splitlines())
    return tuple(line.encode() for line in lines if line and not line.startswith("#"))


def load(root: Root) -> tuple[bytes, ...]:
    """The secrets, newest first; made when missing. Kept per process while the file's
    identity and mtime hold (one stat per use)."""
    target = path_of(root)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        ensure(root)
        st = os.stat(target)
    ident = (st.st_ino, st.st_mtime_ns, st.st_size)
    with _lock:
        hit = _cache.get(str(target))
        if hit is not None and hit[0] == ident:
            return hit[1]
    keys = parse(target.read_text("utf-8"))
    if not keys:
        raise MailError(f"{target}: no secret in it; run 'mailctl srs rotate' to write one")
    with _lock:
        _cache[str(target)] = (ident, keys)
    return keys


def rotate(root: Root) -> int:
    """A new signing secret first; the old ones (up to KEEP_OLD) still verify. Returns
    how many secrets the file holds now."""
    ensure(root)
    target = path_of(root)
    with root.lock("srs-secret"):
        old = parse(target.read_text("utf-8"))[:KEEP_OLD]
        keys = [new_secret(), *(k.decode() for k in old)]
        atomic_write(target, "".join(f"{k}\n" for k in keys), mode=MODE)
    return len(keys)
