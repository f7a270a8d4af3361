"""The seams between the queue runner and the service that runs it: the 'queue-changed'
handler is the service's to register (importing the runner registers nothing), and the
runner's start-up sweep keeps the queue bodies pickup's commit markers still name,
whether it runs in the server or in `mailctl queue flush`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_cli
from engine import control
from engine.outbound import wakeup
from engine.queue import Queue
from helpers_server import make_root, running_server

REPO = Path(__file__).resolve().parent.parent


def wait_until(condition, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_importing_the_runner_registers_no_control_handler():
    code = ("import engine.outbound.runner, engine.pickup, engine.accept.local\n"
            "from engine import control\n"
            "print(sorted(control.HANDLERS))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_queue_changed_wakes_the_runners_of_the_process_with_the_workers(tmp_path):
    root = make_root(tmp_path)
    with running_server(root) as srv:
        async def subscribe():
            block = wakeup.subscription()
            return block, block.__enter__()
        block, event = srv.call(subscribe)
        try:
            assert not event.is_set()
            assert control.request(root, "queue-changed")["ok"] is True
            assert wait_until(event.is_set, 5)
        finally:
            srv.call(lambda: _leave(block))


async def _leave(block) -> None:
    block.__exit__(None, None, None)


def orphans(root, marked: str, unmarked: str) -> None:
    """Two queue bodies without an envelope, two hours old; a pickup commit marker names one."""
    queue = Queue(root)
    queue.ensure()
    old = time.time() - 7200
    for qid in (marked, unmarked):
        path = queue.messages / f"{qid}.eml"
        path.write_bytes(b"Subject: orphan\r\n\r\nbody\r\n")
        os.utime(path, (old, old))
    work = root.pickup_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    (work / "123.1.abcd--x.commit").write_text(json.dumps({"queue": {"id": marked}}))


def test_the_server_runner_keeps_bodies_pickup_will_still_commit(tmp_path):
    root = make_root(tmp_path, settings={"pickup.enabled": False})     # the marker stays unfinished
    orphans(root, "marked1", "unmarked1")
    messages = Queue(root).messages
    with running_server(root):
        assert wait_until(lambda: not (messages / "unmarked1.eml").exists())
        assert (messages / "marked1.eml").exists()


def test_a_flush_without_a_server_keeps_bodies_pickup_will_still_commit(tmp_path):
    root = make_root(tmp_path)
    orphans(root, "marked2", "unmarked2")
    r = run_cli(root, "queue", "flush")
    assert r.code == 0, r.err
    messages = Queue(root).messages
    assert not (messages / "unmarked2.eml").exists()
    assert (messages / "marked2.eml").exists()
