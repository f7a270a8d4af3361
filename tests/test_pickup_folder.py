"""The pickup folder: files dropped in pickup/ are delivered exactly once, slow writers are
waited for, broken files land in pickup/failed/ with a reason, crashes never double-send."""
from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from engine import pickup as pickup_mod
from engine.pickup import Pickup
from engine.queue import Queue
from engine.runtime import Runtime
from helpers_queue import configure, inbox, local_root


@pytest.fixture
def root(tmp_path_factory, tmp_path):
    r = local_root(tmp_path_factory, tmp_path)
    configure(r, {"pickup.settle_seconds": 0.3, "pickup.poll_seconds": 0.2})
    return r


class Worker:
    """The real pickup worker on a runtime, in a background event loop."""

    def __init__(self, root):
        self.runtime = Runtime.for_tests(root)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self):
        self.runtime.stopping = asyncio.Event()
        self.ready = True
        await pickup_mod.run(self.runtime)

    def stop(self):
        self.loop.call_soon_threadsafe(self.runtime.stopping.set)
        self.thread.join(15)
        self.runtime.close()


def wait_until(pred, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def msg(i: int, to="alice@example.com") -> bytes:
    return f"From: bob@example.com\r\nTo: {to}\r\nSubject: pickup {i}\r\n\r\nbody {i}\r\n".encode()


def test_thousand_files_delivered_exactly_once(root):
    for i in range(1000):
        tmp = root.pickup_dir / f"m{i:04d}.tmp"
        tmp.write_bytes(msg(i))
        os.rename(tmp, root.pickup_dir / f"m{i:04d}.eml")
    w = Worker(root)
    try:
        assert wait_until(lambda: len(inbox(root, "alice@example.com")) >= 1000 and
                          not list(root.pickup_dir.glob("*.eml")), 120)
        time.sleep(0.5)
    finally:
        w.stop()
    subjects = [m.split(b"Subject: ")[1].split(b"\n")[0] for m in inbox(root, "alice@example.com")]
    assert len(subjects) == 1000 and len(set(subjects)) == 1000
    assert not list((root.pickup_dir / "failed").iterdir())
    assert not list((root.pickup_dir / ".work").iterdir())


def test_slow_writer_is_taken_once_and_whole(root):
    w = Worker(root)
    try:
        path = root.pickup_dir / "slow.eml"
        body = b"".join(f"line {n} of a slowly written message\r\n".encode() for n in range(200))
        data = b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: slow\r\n\r\n" + body
        with open(path, "wb") as f:
            for k in range(0, len(data), len(data) // 12 + 1):
                f.write(data[k:k + len(data) // 12 + 1])
                f.flush()
                time.sleep(0.25)            # about 3 seconds in all
        assert wait_until(lambda: not path.exists() and len(inbox(root, "alice@example.com")) == 1, 20)
        time.sleep(0.6)
    finally:
        w.stop()
    [m] = inbox(root, "alice@example.com")
    assert m.endswith(body.replace(b"\r\n", b"\n"))


BROKEN = {
    "empty.eml": (b"", "empty message"),
    "junk.eml": (os.urandom(2000).replace(b"\n", b"x") + b"\0", "not a mail message"),
    "text.eml": (b"hello there\nthis is no mail\n", "not a mail message"),
    "norcpt.eml": (b"From: bob@example.com\r\nSubject: nobody\r\n\r\nbody\r\n", "no recipients"),
    "headersonly.eml": (b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: x\r\n", "no body"),
    "unknown.eml": (b"From: bob@example.com\r\nTo: nobody@example.com\r\n\r\nx\r\n", "Unknown User"),
}


def test_broken_files_go_to_failed_with_reason(root):
    for name, (data, _) in BROKEN.items():
        (root.pickup_dir / name).write_bytes(data)
    os.symlink("/etc/passwd", root.pickup_dir / "link.eml")
    (root.pickup_dir / "good.eml").write_bytes(msg(1))
    settings = Runtime.for_tests(root)
    p = Pickup(root, lambda: settings.settings, lambda: settings.directory)
    p.settings_fn().pickup.settle_seconds = 0
    p.run_pass()
    failed = root.pickup_dir / "failed"
    for name, (data, reason) in BROKEN.items():
        assert (failed / name).read_bytes() == data, name
        assert reason in (failed / f"{name}.error").read_text(), name
    assert "not a regular file" in (failed / "link.eml.error").read_text()
    assert len(inbox(root, "alice@example.com")) == 1
    assert not [p for p in root.pickup_dir.iterdir() if p.is_file() or p.is_symlink()]
    settings.close()


def test_x_headers_give_envelope_and_are_removed_bcc_removed(root):
    q = Queue(root)
    data = (b"X-Sender: bob@example.com\r\nX-Receiver: alice@example.com\r\nX-Receiver: far@remote.example\r\n"
            b"From: Someone <display@example.org>\r\nTo: other@remote.example\r\nBcc: hidden@remote.example\r\n"
            b"Subject: x\r\n\r\nbody\r\n")
    (root.pickup_dir / "x.eml").write_bytes(data)
    rt = Runtime.for_tests(root)
    p = Pickup(root, lambda: rt.settings, lambda: rt.directory)
    rt.settings.pickup.settle_seconds = 0
    p.run_pass()
    [m] = inbox(root, "alice@example.com")
    assert b"X-Sender" not in m and b"X-Receiver" not in m and b"Bcc" not in m
    [env] = q.all()
    assert env.sender == "bob@example.com" and [r.address for r in env.recipients] == ["far@remote.example"]
    body = q.body_path(env.id).read_bytes()
    assert b"X-Receiver" not in body and b"hidden" not in body
    rt.close()


def test_ten_thousand_recipients(root):
    rcpts = ", ".join(f"user{i}@remote{i % 7}.example" for i in range(10000))
    (root.pickup_dir / "big.eml").write_bytes(
        f"From: bob@example.com\r\nTo: alice@example.com\r\nBcc: {rcpts}\r\nSubject: many\r\n\r\nx\r\n".encode())
    rt = Runtime.for_tests(root)
    rt.settings.pickup.settle_seconds = 0
    p = Pickup(root, lambda: rt.settings, lambda: rt.directory)
    [summary] = p.run_pass()
    assert "10000 recipient" in summary
    [env] = Queue(root).all()
    assert len(env.recipients) == 10000
    assert len(inbox(root, "alice@example.com")) == 1
    rt.close()


def test_crash_after_delivery_before_removal_does_not_send_twice(root):
    rt = Runtime.for_tests(root)
    rt.settings.pickup.settle_seconds = 0
    p = Pickup(root, lambda: rt.settings, lambda: rt.directory)
    (root.pickup_dir / "a.eml").write_bytes(msg(1))
    (root.pickup_dir / "b.eml").write_bytes(msg(2))
    # a: the crash came after the marker was written (delivered): only cleanup
    orig = p._cleanup
    p._cleanup = lambda token: None
    p.take("a.eml")
    p._cleanup = orig
    # b: the crash came right after the claim (nothing delivered): taken again
    os.rename(root.pickup_dir / "b.eml", root.pickup_dir / ".work" / "123.1.abcd--b.eml")
    assert len(inbox(root, "alice@example.com")) == 1
    p2 = Pickup(root, lambda: rt.settings, lambda: rt.directory)
    assert p2.recover() == 1
    subjects = sorted(m.split(b"Subject: ")[1].split(b"\n")[0] for m in inbox(root, "alice@example.com"))
    assert subjects == [b"pickup 1", b"pickup 2"]
    assert not list((root.pickup_dir / ".work").iterdir())
    rt.close()


CHILD = r"""
import os, sys
sys.path.insert(0, {tests!r})
from engine.root import Root
from engine.runtime import Runtime
from engine.pickup import Pickup
import engine.maildir, engine.queue
if {where!r} == "maildir":
    engine.maildir.Staged.commit = lambda self: os._exit(9)          # killed right at the first commit
else:
    engine.queue.StagedItem.commit = lambda self: os._exit(9)        # killed after the mailbox commits
root = Root({root!r})
rt = Runtime.for_tests(root)
rt.settings.pickup.settle_seconds = 0
Pickup(root, lambda: rt.settings, lambda: rt.directory).run_pass()
"""


@pytest.mark.parametrize("where", ["maildir", "queue"])
def test_killed_in_the_middle_of_commit_is_finished_once(root, where):
    import subprocess
    import sys
    from pathlib import Path
    (root.pickup_dir / "k.eml").write_bytes(
        b"X-Sender: bob@example.com\r\nX-Receiver: alice@example.com\r\nX-Receiver: far@remote.example\r\n"
        b"Subject: killed\r\n\r\nbody\r\n")
    code = CHILD.format(tests=str(Path(__file__).parent), where=where, root=str(root.path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                       cwd=str(Path(__file__).parent.parent))
    assert r.returncode == 9, r.stderr.decode()[-2000:]
    assert list((root.pickup_dir / ".work").glob("*.commit"))
    rt = Runtime.for_tests(root)
    p = Pickup(root, lambda: rt.settings, lambda: rt.directory)
    assert p.recover() == 0                 # finished from the marker, not taken again
    rt.close()
    assert len(inbox(root, "alice@example.com")) == 1
    [env] = Queue(root).all()
    assert [x.address for x in env.recipients] == ["far@remote.example"]
    assert not list((root.pickup_dir / ".work").iterdir())
    assert not list((root.mail_dir / "example.com" / "alice" / "tmp").iterdir())


def test_hard_link_to_a_root_only_file_is_never_mailed(root, tmp_path):
    """A second name of a file the dropper may not read (a hard link made in pickup/) is
    refused: moved to failed/ with a note, the original untouched, nothing mailed."""
    secret = tmp_path / "secret.eml"
    secret.write_bytes(msg(1).replace(b"body 1", b"TOP SECRET"))
    os.chmod(secret, 0o600)
    os.link(secret, root.pickup_dir / "linked.eml")
    (root.pickup_dir / "plain.eml").write_bytes(msg(2))
    w = Worker(root)
    try:
        failed = root.pickup_dir / "failed"
        assert wait_until(lambda: (failed / "linked.eml.error").exists()
                          and len(inbox(root, "alice@example.com")) == 1, 30)
        time.sleep(0.5)
    finally:
        w.stop()
    assert "hard links" in (failed / "linked.eml.error").read_text()
    [m] = inbox(root, "alice@example.com")
    assert b"body 2" in m and b"TOP SECRET" not in m
    assert not Queue(root).all()
    assert b"TOP SECRET" in secret.read_bytes() and os.stat(secret).st_mode & 0o777 == 0o600
