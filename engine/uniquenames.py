"""Parts of unique names for files made many times a second (Maildir and queue files):
the pid, cached and renewed after fork, and random bits from a generator seeded by the
OS. Neither costs a system call per name; uniqueness comes from time, pid and a counter,
the random part only guards against a reused pid."""
from __future__ import annotations

import os
import random

_pid = os.getpid()
_rng = random.Random()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()
    _rng.seed()


os.register_at_fork(after_in_child=_after_fork)


def pid() -> int:
    return _pid


def random_hex(nbytes: int) -> str:
    return f"{_rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"
