"""Free space on the mail root's file system, and the reserve kept for mail already accepted.

Postfix refuses MAIL FROM with `452 4.3.1 Insufficient system storage` while its queue
file system has less free space than queue_minfree (at least 1.5 x message_size_limit),
so a message is refused before it is received rather than half-way through DATA. We do
the same with limits.min_free_space_mb, and count the SIZE a client announces.

statvfs() is cheap, but it is asked at every MAIL FROM: its answer is kept for a second.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from .smtp.replies import INSUFFICIENT_STORAGE

MB = 1024 * 1024
CACHE_SECONDS = 1.0


def reserve_bytes(settings) -> int:
    """limits.min_free_space_mb, but never less than 1.5 x the largest message accepted
    (max_message_size_mb 0 means the 1 GiB ceiling: no 1.5 GiB reserve for it)."""
    limits = settings.limits
    return int(max(float(limits.min_free_space_mb), 1.5 * float(limits.max_message_size_mb)) * MB)


@dataclass(frozen=True)
class Space:
    free: int                # bytes an unprivileged writer may still use
    total: int
    read_only: bool

    def room_for(self, size: int, reserve: int) -> bool:
        """Whether a message of `size` bytes may come in and still leave the reserve."""
        return not self.read_only and self.free - size >= reserve


_cache: dict[str, tuple[float, Space]] = {}
_mutex = threading.Lock()


def cached(path) -> Space | None:
    """The space measured less than a second ago, or None (then call measure())."""
    hit = _cache.get(str(path))
    if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    return None


def measure(path) -> Space:
    """statvfs of path's file system (blocking, but only a system call)."""
    st = os.statvfs(path)
    space = Space(free=st.f_bavail * st.f_frsize, total=st.f_blocks * st.f_frsize,
                  read_only=bool(st.f_flag & os.ST_RDONLY))
    with _mutex:
        _cache[str(path)] = (time.monotonic(), space)
    return space


def space_of(path) -> Space:
    return cached(path) or measure(path)


def status(root, settings) -> dict:
    """The `disk` entry of `mailctl status`."""
    space = space_of(root.path)
    reserve = reserve_bytes(settings)
    return {"free_bytes": space.free, "total_bytes": space.total, "reserve_bytes": reserve,
            "read_only": space.read_only, "below_reserve": not space.room_for(0, reserve)}


class Watch:
    """Logs a warning when free space falls below the reserve and a line when it is back:
    once per crossing, however often it is asked."""

    def __init__(self, log):
        self.log = log
        self.below = False

    def check(self, root, settings) -> bool:
        """True while below the reserve (or read-only)."""
        space = space_of(root.path)
        reserve = reserve_bytes(settings)
        below = not space.room_for(0, reserve)
        if below and not self.below:
            why = "is read-only" if space.read_only else \
                f"has {_mb(space.free)} free, below the reserve of {_mb(reserve)} (limits.min_free_space_mb)"
            self.log.warning("disk: the mail root's file system %s: new mail is refused with "
                             "'%s' until there is room", why, INSUFFICIENT_STORAGE)
        elif self.below and not below:
            self.log.info("disk: %s free again (reserve %s): accepting mail", _mb(space.free), _mb(reserve))
        self.below = below
        return below


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"
