"""A bounded in-memory cache of message headers (CRLF), shared by the sessions of one
server process. Message files never change once delivered (DESIGN.md §4), so the key
(folder path, base name) can never go stale; the cache is only ever a copy of the file
and is rebuilt by reading it again."""
from __future__ import annotations

import threading
from collections import OrderedDict

from ..maildir import read_header, to_crlf

# Only whole headers (BODY[HEADER], RFC822.HEADER), fields outside the folder index and
# SEARCH on such fields come here: a client opening a folder is answered from the index and
# leaves this empty. Headers take ~850 bytes a message: 16 MB holds a 10,000-message folder's
# (a second BODY.PEEK[HEADER] sweep of it: 141 ms cached, 272 ms not); at 100,000 even 64 MB
# held no full sweep (LRU), and only added to the process's RSS (bench/PROFILE.md).
BUDGET_BYTES = 16 * 1024 * 1024


class HeaderCache:
    def __init__(self, budget: int = BUDGET_BYTES):
        self.budget = budget
        self.used = 0
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value: bytes) -> None:
        if len(value) > self.budget // 100:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.used -= len(old)
            self._items[key] = value
            self.used += len(value)
            while self.used > self.budget and self._items:
                _, dropped = self._items.popitem(last=False)
                self.used -= len(dropped)


HEADERS = HeaderCache()


def header(folder, msg, remember: bool = True) -> bytes:
    """The CRLF header (with its blank line) of a message, from the cache or the file.
    remember=False leaves the cache as it is (a one-off read, e.g. to build the index)."""
    key = (str(folder.path), msg.base)
    value = HEADERS.get(key)
    if value is None:
        # A plain string path: no Path objects for each of a folder's messages.
        path = f"{key[0]}/{msg.subdir}/{msg.filename}"
        value = to_crlf(read_header(path, lambda: folder.read(msg)))
        if remember:
            HEADERS.put(key, value)
    return value
