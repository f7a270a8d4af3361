"""Stray files in a folder's tmp/: what a crash left there (a delivery, APPEND, COPY or
large DATA cut short) is deleted when the folder is synced, once both its mtime and its
ctime are older than 36 hours, as Dovecot does. tmp/ is looked at most once an hour
per folder in a process: a sync of a quiet folder stays a stamp check.

Why a file some process is writing now is never taken: every writer of tmp/ (Staged
for deliveries and small APPENDs, the Spool of a large APPEND or DATA, COPY's hard
link, the pickup's staged copies) renames or unlinks its file within one command, and
while it works on it the kernel keeps the ctime fresh: every write, the link() of a
COPY and the utime() that sets an APPEND's INTERNALDATE (an old mtime on purpose) set
the ctime to now, and nothing can set a ctime back. A file whose ctime is 36 hours old
has been touched by nobody for 36 hours.

Only regular files go; a symbolic link (nothing inside the root is reached through one:
nofollow.py) and a directory (a folder create or delete a crash cut short) are left.
A read-only or unreadable tmp/ is passed over quietly: the tree keeps being served.
"""
from __future__ import annotations

import errno
import logging
import os
import threading
import time

from .. import nofollow

log = logging.getLogger("mailctl.store")

DEFAULT_MAX_AGE = 36 * 3600     # seconds; Dovecot's MAILDIR_TMP_DELETE_SECS
LOOK_EVERY = 3600               # seconds between two looks at one folder's tmp/
_QUIET = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR)

_max_age: float = DEFAULT_MAX_AGE
_looked: dict[str, float] = {}  # folder path -> time.monotonic() of the last look
_looked_mutex = threading.Lock()


def set_tmp_max_age(seconds: float) -> None:
    """The age past which stray tmp/ files go (settings: mailbox.tmp_max_age_hours);
    0 keeps them all."""
    global _max_age
    _max_age = seconds


def clean_when_due(folder_path) -> int:
    """clean() the folder's tmp/ unless this process looked at it in the last hour.
    Never raises: a sync must not fail over its tmp/."""
    if _max_age <= 0:
        return 0
    key = os.fspath(folder_path)
    now = time.monotonic()
    with _looked_mutex:                               # syncs run in several threads
        last = _looked.get(key)
        if last is not None and now - last < LOOK_EVERY:
            return 0
        if len(_looked) > 50_000:                    # forget folders looked at long ago
            for k in [k for k, t in _looked.items() if now - t >= LOOK_EVERY]:
                del _looked[k]
        _looked[key] = now
    try:
        return clean(folder_path, _max_age)
    except Exception:                                 # a cleanup is never worth a failed sync
        log.exception("%s/tmp: cleanup failed", key)
        return 0


def clean(folder_path, max_age: float) -> int:
    """Delete the regular files of folder_path/tmp whose mtime and ctime are both older
    than max_age seconds; returns how many went. Neither the folder nor tmp/ is opened
    through a link, and the files are unlinked relative to tmp/'s descriptor."""
    folder = os.fspath(folder_path)
    try:
        top = nofollow.open_dir(folder)
        try:
            fd = nofollow.open_dir("tmp", dir_fd=top, shown=f"{folder}/tmp")
        finally:
            os.close(top)
    except OSError as e:                              # LinkRefused too
        _passed_over(folder, e)
        return 0
    removed = 0
    try:
        cutoff = time.time() - max_age
        with os.scandir(fd) as it:
            entries = [e for e in it if e.is_file(follow_symlinks=False)]
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if st.st_mtime >= cutoff or st.st_ctime >= cutoff:
                    continue
                os.unlink(entry.name, dir_fd=fd)
                removed += 1
            except FileNotFoundError:                 # renamed into place or removed meanwhile
                continue
            except OSError as e:                      # a read-only tree: the rest would fail too
                _passed_over(folder, e)
                break
    except OSError as e:
        _passed_over(folder, e)
    finally:
        os.close(fd)
    if removed:
        log.info("%s/tmp: %d stray file(s) older than %g hours deleted", folder, removed, max_age / 3600)
    return removed


def _passed_over(folder: str, e: OSError) -> None:
    if e.errno in _QUIET or isinstance(e, nofollow.LinkRefused):
        log.debug("%s/tmp: not cleaned: %s", folder, e)
    else:
        log.warning("%s/tmp: not cleaned: %s", folder, e)
