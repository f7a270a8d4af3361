"""What a serving process made of folders (IMAP's SELECT listings, POP3's snapshots),
shared by its sessions and kept fresh in the background.

A value is given out while its folder's stamp (maildir.folder_stamp: new/, cur/ and the
uidlist) is still the one it was made at. When a folder used lately changes (another
process's STORE 1:*, new mail, an expunge by Dovecot), a thread remakes its value once
the folder has been still for a poll, so the next SELECT or POP3 login here finds it
ready instead of listing and matching 100,000 files while the client waits. That is
the work Dovecot's other processes do when they read the index log.

A refresh never reads a message file and never numbers a bulk fill
(Folder.sync_quietly): that is left to the first session that opens the folder.

STATUS answers are kept the same way (without the background refresh): a STATUS of a
folder nobody changed since costs three lstat() calls, made on the event loop.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from .errors import MailError
from .maildir import MTIME_SLACK, Folder, folder_stamp

POLL_SECONDS = 0.25
RECENT_SECONDS = 600.0     # a folder used this long ago or less is kept fresh
QUIET_NEW_UIDS = 1000      # a refresh gives UIDs to at most this many new files

log = logging.getLogger("mailctl")


@dataclass(eq=False)
class _Entry:
    value: object              # has .stamp: folder_stamp() it was made at, or None
    folder: Folder
    used: float                # time.monotonic() of the last put or hit
    seen: tuple | None = None  # stamp at the last poll, while it differs from the value's
    tried: tuple | None = None  # stamp of the last remake (not retried while unchanged)


class StampedCache:
    """Values by folder path, given out while the folder's stamp is unchanged; the most
    recently used few are kept. With remake (folder -> value, or None when that is not
    cheap now), the background refresher keeps recently used ones fresh."""

    def __init__(self, remake: Callable[[Folder], object | None] | None = None, size: int = 64):
        self._values: OrderedDict[str, _Entry] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self._remake = remake
        if remake is not None:
            _CACHES.append(self)

    def get(self, key: str, stamp: tuple):
        with self._lock:
            entry = self._values.get(key)
            if entry is None or entry.value.stamp != stamp:
                return None
            entry.used = time.monotonic()
            self._values.move_to_end(key)
            return entry.value

    def put(self, key: str, value, folder: Folder) -> None:
        with self._lock:
            self._values[key] = _Entry(value, folder, time.monotonic())
            self._values.move_to_end(key)
            while len(self._values) > self._size:
                self._values.popitem(last=False)
        if self._remake is not None:
            _start_refresher()

    def peek(self, key: str):
        """The last value put, whatever its stamp (for tests)."""
        with self._lock:
            entry = self._values.get(key)
            return entry.value if entry is not None else None

    def refresh(self) -> int:
        """One poll: remake the values of recently used folders that changed and have
        been still since the last poll. Returns how many were remade."""
        now = time.monotonic()
        with self._lock:
            due = [(key, e) for key, e in self._values.items() if now - e.used <= RECENT_SECONDS]
        remade = 0
        for key, entry in due:
            stamp, newest = folder_stamp(entry.folder.path)
            if None in stamp[:2]:
                continue                    # deleted: never made again by a refresh
            if stamp == entry.value.stamp or stamp == entry.tried:
                continue
            if stamp != entry.seen or time.time() - newest <= MTIME_SLACK:
                entry.seen = stamp          # still changing: wait for a still poll
                continue
            entry.tried = stamp
            try:
                value = self._remake(entry.folder)
            except (OSError, LookupError, MailError) as e:  # deleted, renamed or locked meanwhile
                log.debug("refresh of %s skipped: %s", key, e)
                value = None
            if value is None:
                continue
            with self._lock:
                if self._values.get(key) is entry:
                    entry.value = value
                    remade += 1
        return remade


@dataclass(frozen=True)
class FolderStatus:
    stamp: tuple       # folder_stamp() taken before the sync the values come from
    values: dict       # Folder.status()


_STATUSES = StampedCache(size=256)


def folder_status(maildir, name: str) -> dict:
    """Folder.status() of a folder of maildir (a Maildir; NotFound when it does not
    exist), kept for cached_status() when the folder was still before the sync began."""
    started = time.time()
    stamp, newest = folder_stamp(maildir.folder_path(name))
    folder = maildir.folder(name)
    values = folder.status()
    if None not in stamp and started - newest > MTIME_SLACK:
        _STATUSES.put(str(folder.path), FolderStatus(stamp, values), folder)
    return dict(values)


def cached_status(maildir, name: str) -> dict | None:
    """The kept folder_status() while new/, cur/ and the uidlist keep the stamp it was
    made at (any message added, renamed for a flag, or removed, any UID given, changes
    one of them), else None."""
    path = maildir.folder_path(name)
    found = _STATUSES.get(str(path), folder_stamp(path)[0])
    return None if found is None else dict(found.values)


_CACHES: list[StampedCache] = []
_refresher_pid: int | None = None
_refresher_lock = threading.Lock()


def _start_refresher() -> None:
    global _refresher_pid
    if _refresher_pid == os.getpid():
        return
    with _refresher_lock:
        if _refresher_pid != os.getpid():
            threading.Thread(target=_refresh_forever, name="folder-refresh", daemon=True).start()
            _refresher_pid = os.getpid()


def _refresh_forever() -> None:
    while True:
        time.sleep(POLL_SECONDS)
        for cache in _CACHES:
            try:
                cache.refresh()
            except Exception:          # noqa: BLE001 - keep refreshing the others
                log.exception("folder refresh failed")
