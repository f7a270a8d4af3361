"""A Dovecot dotlock whose holder is killed at any moment never blocks the next process
for the two-minute stale time: the lock file appears with "pid:host" already in it, so
the dead pid breaks it at once. (A `mailctl import` killed half-way once left an empty
dovecot-uidlist.lock and the resumed import waited 30 s and gave up.)"""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time

from engine.locks import DotLock
from helpers_server import REPO

# Takes and drops the lock as fast as it can, so a kill lands in every part of the cycle.
HOLDER = """
import sys
from engine.locks import DotLock
path = sys.argv[1]
with DotLock(path):
    print("ready", flush=True)
while True:
    with DotLock(path):
        pass
"""


def test_a_holder_killed_at_any_moment_leaves_no_lock_that_blocks(tmp_path):
    lock = tmp_path / "dovecot-uidlist.lock"
    rng = random.Random(11)
    for _ in range(40):
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
        assert holder.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0, 0.02))
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        holder.stdout.close()
        if lock.exists():                   # killed while holding: its pid is in it
            assert lock.read_text() == f"{holder.pid}:{socket.gethostname()}"
        started = time.monotonic()
        with DotLock(lock, timeout=5):
            assert lock.read_text() == f"{os.getpid()}:{socket.gethostname()}"
        assert time.monotonic() - started < 2
        assert not lock.exists()


def test_a_lock_is_only_ever_one_holders(tmp_path):
    """Two processes counting through one file under the lock lose no increment."""
    counter = tmp_path / "count"
    counter.write_text("0")
    lock = tmp_path / "count.lock"
    script = ("import sys; from pathlib import Path; from engine.locks import DotLock\n"
              "c = Path(sys.argv[1])\n"
              "for _ in range(500):\n"
              "    with DotLock(sys.argv[2]):\n"
              "        c.write_text(str(int(c.read_text()) + 1))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(counter), str(lock)],
                              env={**os.environ, "PYTHONPATH": str(REPO)}) for _ in range(2)]
    for p in procs:
        assert p.wait(60) == 0
    assert counter.read_text() == "1000"
    assert not lock.exists()


def test_a_lock_file_is_readable_by_its_owner_only(tmp_path):
    lock = tmp_path / "x.lock"
    with DotLock(lock):
        assert lock.stat().st_mode & 0o777 == 0o600
