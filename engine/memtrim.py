"""Giving memory back to the system after large input (a big message, a megabyte literal,
hostile over-long lines).

CPython frees those buffers, but glibc's allocator keeps the freed pages of its heaps
(and of the arenas of the disk threads) for reuse, so a serving process that once held a
few large buffers stays at that size for good. What this module does against it:
- setup() fixes glibc's mmap threshold at 256 KB. By default each large block freed
  raises the threshold (up to 32 MB), after which megabyte buffers come from the heap,
  where they fragment it and stay: measured on mailctl serve after 60 MB APPEND, FETCH,
  DATA and RETR, RSS stayed 8 MB above the start; with the fixed threshold, 0-1 MB.
- release() first collects young cyclic garbage: an exception kept in a local of the frame
  it was raised through (a refused command) holds that frame and its megabyte of input
  until the collector runs, and with the serving processes' thresholds (service.py) that
  can take a long time (measured: 1 MB more RSS per such session, never returned). Then
  malloc_trim(0) returns free heap pages. Both walk memory, so they run only after
  something large was noted, at most once a second (one due sooner is put off).

    memtrim.setup()              # once, in a serving process
    memtrim.note(len(data))      # wherever a large buffer was made
    memtrim.release()            # when the work is done (a command, a session)
"""
from __future__ import annotations

import asyncio
import ctypes
import gc
import time

NOTE_FROM = 256 * 1024           # buffers smaller than this are left to the allocator
MIN_INTERVAL_S = 1.0
MMAP_THRESHOLD = 256 * 1024      # blocks this large are mmap'd, and unmapped when freed
_M_MMAP_THRESHOLD = -3           # mallopt's parameter number (malloc.h)

try:
    _libc = ctypes.CDLL("libc.so.6")
    _malloc_trim, _mallopt = _libc.malloc_trim, _libc.mallopt
except (OSError, AttributeError):   # not glibc: nothing to do
    _malloc_trim = _mallopt = None

_pending = False
_last = 0.0
_scheduled = False


def setup() -> None:
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def note(nbytes: int) -> None:
    global _pending
    if nbytes >= NOTE_FROM:
        _pending = True


def release() -> None:
    """Trim now if something large was noted; within a second of the last trim, later."""
    global _pending, _last, _scheduled
    if not _pending or _malloc_trim is None:
        return
    now = time.monotonic()
    if now - _last < MIN_INTERVAL_S:
        if not _scheduled:
            try:
                asyncio.get_running_loop().call_later(MIN_INTERVAL_S, _deferred)
                _scheduled = True
            except RuntimeError:         # no loop in this thread: the next release() does it
                pass
        return
    _pending = False
    _last = now
    gc.collect(1)                    # the young generations only: a full pass costs too much
    _malloc_trim(0)


def _deferred() -> None:
    global _scheduled
    _scheduled = False
    release()
