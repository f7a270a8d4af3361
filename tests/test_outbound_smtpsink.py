"""Delivery to Postfix's smtp-sink (Debian package postfix): the pipelined path against a
real Postfix component, and permanent/temporary refusals from a server without PIPELINING."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from dnsserver import DNSServer
from helpers_queue import Harness, base_settings, configure, inbox, local_root
from sinks import free_port


@pytest.fixture
def root(tmp_path_factory, tmp_path):
    return local_root(tmp_path_factory, tmp_path)


def smtp_sink(port: int, dump_dir, *extra: str) -> subprocess.Popen:
    assert shutil.which("smtp-sink"), "smtp-sink comes with Debian's postfix package"
    dump = ["-d", f"{dump_dir}/%H%M%S."] if dump_dir else []
    proc = subprocess.Popen(["smtp-sink", "-u", "nobody", *dump, *extra,
                             f"127.0.0.2:{port}", "64"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.2", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("smtp-sink did not start")


@pytest.fixture
def dns():
    d = DNSServer({"far.example": {"A": ["127.0.0.2"]}})
    yield d
    d.close()


def test_pipelined_delivery_to_smtp_sink(root, dns):
    import tempfile
    from pathlib import Path
    dump = Path(tempfile.mkdtemp(prefix="smtp-sink-dump-"))      # smtp-sink runs as nobody
    dump.chmod(0o777)
    port = free_port("127.0.0.2")
    sink = smtp_sink(port, dump)
    try:
        configure(root, base_settings(dns, port))
        h = Harness(root)
        try:
            for i in range(20):
                h.enqueue("alice@example.com", [f"r{i}@far.example", f"s{i}@far.example"])
            h.run()
            assert h.queue.count() == 0, [r.reply for e in h.queue.all() for r in e.recipients][:3]
        finally:
            h.close()
        deadline = time.monotonic() + 5
        while len(list(dump.iterdir())) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        dumps = [p.read_bytes() for p in dump.iterdir()]
        assert len(dumps) == 20
        assert all(b"Subject: test" in d for d in dumps)
    finally:
        sink.terminate()
        sink.wait(5)
        shutil.rmtree(dump, ignore_errors=True)


@pytest.mark.parametrize("flag,status", [("-f", "failed"), ("-r", "deferred")])
def test_refused_recipients_without_pipelining(root, dns, flag, status):
    port = free_port("127.0.0.2")
    sink = smtp_sink(port, None, flag, "rcpt")
    try:
        configure(root, base_settings(dns, port))
        h = Harness(root)
        try:
            qid = h.enqueue("alice@example.com", ["x@far.example"])
            h.run()
            if status == "deferred":
                r = h.queue.find(qid).recipients[0]
                assert r.status == "deferred" and r.code // 100 == 4
            else:
                assert h.queue.count() == 0, [r.reply for e in h.queue.all() for r in e.recipients]
                [dsn] = [m for m in inbox(root, "alice@example.com") if b"multipart/report" in m]
                assert b"Action: failed" in dsn
        finally:
            h.close()
    finally:
        sink.terminate()
        sink.wait(5)
