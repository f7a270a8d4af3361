"""A lock whose holder is killed at any moment never shuts the next process out: the
lock file appears with its holder's pid already in it, so the dead pid breaks it at once.
An empty one waited for the stale time: two minutes for Dovecot's dotlock (a `mailctl
import` killed half-way left one and the resumed import gave up after 30 s), an hour for
the POP3 maildrop lock."""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from engine.locks import POP3_LOCK_NAME, DotLock, MailboxLock
from helpers_server import REPO

# Takes and drops the lock as fast as it can, so a kill lands in every part of the cycle.
HOLDERS = {
    "dotlock": """
import sys
from engine.locks import DotLock
path = sys.argv[1] + "/dovecot-uidlist.lock"
print("ready", flush=True)
while True:
    with DotLock(path):
        pass
""",
    "pop3": """
import sys
from pathlib import Path
from engine.locks import MailboxLock
print("ready", flush=True)
while True:
    lock = MailboxLock(Path(sys.argv[1]))
    assert lock.acquire()
    lock.release()
"""}


def _take(kind: str, folder) -> str:
    """Take the lock as the next process would, within 2 s; the holder text it wrote."""
    started = time.monotonic()
    if kind == "dotlock":
        lock = folder / "dovecot-uidlist.lock"
        with DotLock(lock, timeout=5):
            text = lock.read_text()
    else:
        lock = MailboxLock(folder)
        assert lock.acquire(), (folder / POP3_LOCK_NAME).read_bytes()
        text = lock.path.read_text()
        lock.release()
    assert time.monotonic() - started < 2
    return text


@pytest.mark.parametrize("kind", HOLDERS)
def test_a_holder_killed_at_any_moment_leaves_no_lock_that_blocks(tmp_path, kind):
    rng = random.Random(11)
    lock = tmp_path / ("dovecot-uidlist.lock" if kind == "dotlock" else POP3_LOCK_NAME)
    for _ in range(40):
        holder = subprocess.Popen([sys.executable, "-c", HOLDERS[kind], str(tmp_path)], stdout=subprocess.PIPE,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
        assert holder.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.001, 0.02))
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        holder.stdout.close()
        if lock.exists():                   # killed while holding: its pid is in it
            assert lock.read_text().startswith(f"{holder.pid}:" if kind == "dotlock" else f"{holder.pid} ")
        text = _take(kind, tmp_path)
        assert text.startswith(f"{os.getpid()}:{socket.gethostname()}" if kind == "dotlock" else f"{os.getpid()} ")
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
