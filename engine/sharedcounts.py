"""Counters shared by every serving process of one root: open connections per protocol,
per client IP and per user, and messages per client IP in the last minute.

With several serving processes (`server.processes`) the kernel spreads connections over
them, so a limit such as "20 SMTP connections per IP" must count across processes. Each
process owns one slot of the memory-mapped file run/counts.shm and only ever changes its
own slot, so no locks are needed; a reader adds up every slot. The supervisor
zeroes a slot whose process is gone.

Per-key counters (an IP, a user) live in a fixed table: each key is hashed into two rows
(count-min style), and a count is the smaller of the two row sums. A count can only be
over-estimated, and only when another key collides with it in both rows.

Messages per minute use two per-minute tables per slot (this minute and the one before);
the count for "the last 60 seconds" is this minute's count plus the share of the previous
minute that still falls inside the window, rounded up.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import mmap
import os
import time
from pathlib import Path

from .errors import MailError

FILE_NAME = "counts.shm"
MAX_SLOTS = 16                       # serving processes per root
PROTOCOLS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "managesieve")
BUCKETS = 8192                       # per row; two rows per table

# One slot, in 32-bit words: [pid, minute of rate table 0, minute of rate table 1, pad],
# then a total per protocol, then the connection table, then two rate tables.
_HEADER = 4
_TOTALS = _HEADER
_CONNS = _TOTALS + len(PROTOCOLS)
_RATES = _CONNS + 2 * BUCKETS
SLOT_WORDS = _RATES + 2 * 2 * BUCKETS
FILE_SIZE = MAX_SLOTS * SLOT_WORDS * 4


def _buckets(key: str) -> tuple[int, int]:
    """The key's bucket in each row, from independent halves of one hash (CRC-32 with two
    seeds would not do: for keys of equal length its two values differ by a constant,
    so keys colliding in one row would collide in the other too)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest[:4], "little") % BUCKETS, int.from_bytes(digest[4:], "little") % BUCKETS


class SharedCounts:
    def __init__(self, path: Path, slot: int, create: bool, clock=time.time):
        if not 0 <= slot < MAX_SLOTS:
            raise ValueError(f"slot {slot}: must be 0..{MAX_SLOTS - 1}")
        self.path = Path(path)
        self.slot = slot
        self.clock = clock
        if create:
            # a new file renamed into place: a process of an earlier run that still has the
            # old one mapped keeps its own (truncating a mapped file would crash it)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                # every block allocated now: a sparse file mapped in memory raises SIGBUS at
                # the first write to a page the full file system cannot give a block
                os.posix_fallocate(fd, 0, FILE_SIZE)
            except OSError as e:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise MailError(f"cannot create the shared counters run/{FILE_NAME}: "
                                f"{os.strerror(e.errno)}; free space on the mail root's file system") from None
            os.rename(tmp, self.path)
        else:
            fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW)
            if os.fstat(fd).st_size < FILE_SIZE:       # never map past a file's blocks
                os.close(fd)
                raise MailError(f"run/{FILE_NAME} is incomplete; restart the server")
        try:
            self._map = mmap.mmap(fd, FILE_SIZE)
        finally:
            os.close(fd)
        self._words = memoryview(self._map).cast("I")
        self._base = slot * SLOT_WORDS
        self.clear_slot(slot)
        self._words[self._base] = os.getpid()

    @classmethod
    def create(cls, run_dir: Path, **kw) -> "SharedCounts":
        """The supervisor (or a process serving alone): a fresh file, itself in slot 0."""
        return cls(Path(run_dir) / FILE_NAME, 0, create=True, **kw)

    @classmethod
    def attach(cls, run_dir: Path, slot: int, **kw) -> "SharedCounts":
        return cls(Path(run_dir) / FILE_NAME, slot, create=False, **kw)

    def close(self) -> None:
        if self._words is not None:
            self.clear_slot(self.slot)
            self._words.release()
            self._words = None
            self._map.close()

    def clear_slot(self, slot: int) -> None:
        """Forget a slot's counts (its process is gone, or a new one takes it)."""
        base = slot * SLOT_WORDS
        self._map[base * 4:(base + SLOT_WORDS) * 4] = bytes(SLOT_WORDS * 4)

    # -- connections --
    def opened(self, protocol: str, ip: str) -> None:
        self._add_total(protocol, 1)
        self._add_key(_CONNS, f"{protocol} ip {ip}", 1)

    def closed(self, protocol: str, ip: str) -> None:
        self._add_total(protocol, -1)
        self._add_key(_CONNS, f"{protocol} ip {ip}", -1)

    def user_added(self, protocol: str, user: str, delta: int = 1) -> None:
        self._add_key(_CONNS, f"{protocol} user {user.lower()}", delta)

    def adjust(self, key: str, delta: int) -> None:
        """Any other count kept while something lasts (logins in flight from an IP,
        connections not yet logged in, connections of one user from one IP)."""
        self._add_key(_CONNS, key, delta)

    def current(self, key: str) -> int:
        return self._count_key(_CONNS, key)

    def total(self, protocols=PROTOCOLS) -> int:
        words = self._words
        n = 0
        for p in protocols:
            i = _TOTALS + PROTOCOLS.index(p)
            n += sum(words[i::SLOT_WORDS])        # this word of every slot
        return n

    def count_ip(self, protocols, ip: str) -> int:
        return sum(self._count_key(_CONNS, f"{p} ip {ip}") for p in protocols)

    def count_user(self, protocols, user: str) -> int:
        return sum(self._count_key(_CONNS, f"{p} user {user.lower()}") for p in protocols)

    # -- messages per minute --
    def allow(self, key: str, per_minute: int) -> bool:
        """Count one event for key unless per_minute were seen in the last 60 s."""
        if self.recent(key) >= per_minute:
            return False
        self.hit(key)
        return True

    def hit(self, key: str) -> int:
        """Count one event for key; return the events in the last 60 s, this one included."""
        now = self.clock()
        minute = int(now // 60)
        words, base = self._words, self._base
        table = minute % 2
        if words[base + 1 + table] != minute:      # a new minute: reuse the older table
            start = (base + _RATES + table * 2 * BUCKETS) * 4
            self._map[start:start + 2 * BUCKETS * 4] = bytes(2 * BUCKETS * 4)
            words[base + 1 + table] = minute
        self._add_key(_RATES + table * 2 * BUCKETS, key, 1)
        return self.recent(key, now)

    def clear_rates(self) -> None:
        """Forget this process's per-minute counts."""
        start = (self._base + _RATES) * 4
        self._map[start:start + 2 * 2 * BUCKETS * 4] = bytes(2 * 2 * BUCKETS * 4)

    def recent(self, key: str, now: float | None = None) -> int:
        now = self.clock() if now is None else now
        minute = int(now // 60)
        weight = 1 - (now % 60) / 60
        rows = _buckets(key)
        best = None
        for row, bucket in enumerate(rows):
            current = previous = 0
            for s in range(MAX_SLOTS):
                base = s * SLOT_WORDS
                for table in (0, 1):
                    stamp = self._words[base + 1 + table]
                    if stamp == minute or stamp == minute - 1:
                        n = self._words[base + _RATES + table * 2 * BUCKETS + row * BUCKETS + bucket]
                        if stamp == minute:
                            current += n
                        else:
                            previous += n
            estimate = current + math.ceil(previous * weight)
            best = estimate if best is None else min(best, estimate)
        return best or 0

    # -- internals --
    def _add_total(self, protocol: str, delta: int) -> None:
        i = self._base + _TOTALS + PROTOCOLS.index(protocol)
        self._words[i] = max(0, self._words[i] + delta)

    def _add_key(self, table: int, key: str, delta: int) -> None:
        words = self._words
        for row, bucket in enumerate(_buckets(key)):
            i = self._base + table + row * BUCKETS + bucket
            words[i] = max(0, words[i] + delta)

    def _count_key(self, table: int, key: str) -> int:
        words = self._words
        sums = []
        for row, bucket in enumerate(_buckets(key)):
            offset = table + row * BUCKETS + bucket
            sums.append(sum(words[offset::SLOT_WORDS]))
        return min(sums)
