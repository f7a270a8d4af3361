"""A mail root on a small file system, for the full-disk tests of mail intake.

    with full_disk_root(tmp_path, "tmpfs", accounts=..., settings=...) as (fs, root):
        fs.fill(); ...; fs.unfill()

run/ and log/ are kept off the small file system (as on a system with /run on tmpfs):
a file open for writing there (the shared counts, the log) would stop the read-only
remount of the EROFS tests with "busy".
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time

from helpers_server import make_root
from helpers_smallfs import small_fs

# no reserve: the disk can be filled to the last byte before DATA
NO_RESERVE = {"limits.max_message_size_mb": 0, "limits.min_free_space_mb": 0, "queue.offline": True,
              "pickup.enabled": False, "auth.allow_plaintext": True}


@contextlib.contextmanager
def full_disk_root(tmp_path, kind: str = "tmpfs", size_mb: int = 16, accounts=None, settings=None,
                   elsewhere=("run", "log")):
    with small_fs(tmp_path, kind, size_mb) as fs:
        root = make_root(fs.path, accounts=accounts or {}, settings={**NO_RESERVE, **(settings or {})})
        for name in elsewhere:
            outside = tmp_path / f"outside-{name}"
            if (root.path / name).exists():
                shutil.move(root.path / name, outside)
            outside.mkdir(exist_ok=True)
            os.symlink(outside, root.path / name)
        yield fs, root


def stored_files(root) -> list[str]:
    """Every file a message could leave: in a Maildir's new/, cur/ and tmp/, and in the queue."""
    out = []
    for base in (root.mail_dir, root.queue_dir):
        for dirpath, _, names in os.walk(base):
            leaf = os.path.basename(dirpath)
            if leaf in ("new", "cur", "tmp") or base == root.queue_dir:
                out += [os.path.relpath(os.path.join(dirpath, n), root.path) for n in names]
    return sorted(out)


def settle_cache() -> None:
    """The server's view of free space is kept for a second."""
    time.sleep(1.1)


def wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()
