"""Crash safety of outbound delivery: `mailctl serve` is killed with SIGKILL while it
delivers 1,000 queued messages; after a restart every message reaches the sink, and
duplicates are at most the deliveries that were in flight at the kill."""
from __future__ import annotations

import asyncio
import collections
import time

from dnsserver import DNSServer
from engine.queue import Queue
from helpers_server import make_root, serve_process
from sinks import Sink

N = 1000


def test_sigkill_while_delivering_loses_nothing(tmp_path):
    dns = DNSServer({"far.example": {"MX": [(10, "mx.far.example")]}, "mx.far.example": {"A": ["127.0.0.2"]}})
    sink = Sink("127.0.0.2")
    try:
        root = make_root(tmp_path, settings={
            "queue.nameservers": [dns.address], "queue.smtp_port": sink.port, "queue.retry_minutes": [0, 0.01],
            "queue.concurrency": 10, "queue.connect_timeout_s": 2, "pickup.enabled": False})
        q = Queue(root)
        for i in range(N):
            q.enqueue("sender@example.com", [f"r{i % 50}@far.example"],
                      f"From: sender@example.com\r\nTo: r@far.example\r\nSubject: crash {i}\r\n\r\nbody\r\n".encode())
        with serve_process(root) as proc:
            deadline = time.monotonic() + 60
            while len(sink.messages) < N // 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            proc.kill()
        in_flight = len(q.ids("active"))
        received_at_kill = len(sink.messages)
        assert 0 < received_at_kill < N, "the kill should land in the middle of the run"
        with serve_process(root):
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and (q.count() or len(sink.messages) < N):
                time.sleep(0.05)
        subjects = collections.Counter(m.data.split(b"Subject: ")[1].split(b"\r\n")[0] for m in sink.messages)
        assert len(subjects) == N, f"{N - len(subjects)} messages never arrived"
        duplicates = sum(c - 1 for c in subjects.values())
        print(f"\ncrash test: killed after {received_at_kill} deliveries, {in_flight} in flight, "
              f"{duplicates} duplicate(s)")
        assert duplicates <= in_flight
        assert q.count() == 0
    finally:
        sink.stop()
        dns.close()


def test_an_item_staged_but_never_committed_is_swept_at_start(tmp_path):
    """A crash between staging (body and envelope under a temp name) and the commit leaves
    two files no reader sees; the runner's start removes both once they are an hour old."""
    import os
    from engine.outbound.runner import Runner
    from engine.runtime import Runtime
    root = make_root(tmp_path)
    queue = Queue(root)
    staged = queue.stage("a@example.com", ["b@far.example"], b"Subject: x\r\n\r\nhi\r\n")
    leftovers = [staged.staged_envelope, queue.body_path(staged.envelope.id)]
    for path in leftovers:
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    runtime = Runtime.for_tests(root)
    try:
        asyncio.run(Runner(runtime).start())
    finally:
        runtime.close()
    assert not any(p.exists() for p in leftovers)
    assert queue.count() == 0
    assert [list((root.queue_dir / s).iterdir()) for s in ("deferred", "messages")] == [[], []]


def test_items_of_a_process_that_dies_after_our_start_are_taken_back_without_a_restart(tmp_path):
    """A server started while the process that claimed some items is still dying (a
    supervisor killed and started again at once) takes them back once that process is gone,
    not at its next restart."""
    import socket
    import subprocess
    dns = DNSServer({"far.example": {"MX": [(10, "mx.far.example")]}, "mx.far.example": {"A": ["127.0.0.2"]}})
    sink = Sink("127.0.0.2")
    dying = subprocess.Popen(["sleep", "60"])          # a live process holding claims
    try:
        root = make_root(tmp_path, settings={
            "queue.nameservers": [dns.address], "queue.smtp_port": sink.port, "queue.retry_minutes": [0, 0.01],
            "queue.connect_timeout_s": 2, "pickup.enabled": False})
        q = Queue(root)
        for i in range(3):
            qid = q.enqueue("sender@example.com", [f"r{i}@far.example"],
                            f"Subject: held {i}\r\n\r\nbody\r\n".encode())
            q.write_attempt(q.claim(qid, f"{socket.gethostname()}:{dying.pid}"))
        with serve_process(root):
            time.sleep(2)
            assert len(sink.messages) == 0 and len(q.ids("active")) == 3     # its owner still works on them
            dying.kill()
            dying.wait()
            deadline = time.monotonic() + 30
            # the item goes from the queue just after the sink's 250: wait for both
            while time.monotonic() < deadline and (len(sink.messages) < 3 or q.count() != 0):
                time.sleep(0.1)
            assert len(sink.messages) == 3 and q.count() == 0
    finally:
        dying.kill()
        sink.stop()
        dns.close()


def test_deliveries_a_crash_interrupted_are_sent_at_once_after_the_restart(tmp_path):
    """With the default retry schedule (first retry after minutes), an item whose attempt a
    crash cut short is not held back by that backoff: the restarted server sends it now."""
    import socket
    import subprocess
    dns = DNSServer({"far.example": {"MX": [(10, "mx.far.example")]}, "mx.far.example": {"A": ["127.0.0.2"]}})
    sink = Sink("127.0.0.2")
    gone = subprocess.Popen(["true"])
    gone.wait()                                        # a pid that no longer runs: the crashed runner
    try:
        root = make_root(tmp_path, settings={
            "queue.nameservers": [dns.address], "queue.smtp_port": sink.port,
            "queue.connect_timeout_s": 2, "pickup.enabled": False})
        q = Queue(root)
        qid = q.enqueue("sender@example.com", ["r@far.example"], b"Subject: cut short\r\n\r\nbody\r\n")
        env = q.claim(qid, f"{socket.gethostname()}:{gone.pid}")
        env.next_attempt = time.time() + 450               # the backoff its attempt had set
        q.write_attempt(env)
        with serve_process(root):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (len(sink.messages) < 1 or q.count() != 0):
                time.sleep(0.1)
            assert len(sink.messages) == 1 and q.count() == 0
    finally:
        sink.stop()
        dns.close()
