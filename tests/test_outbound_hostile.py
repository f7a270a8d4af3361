"""Outbound delivery against hostile or broken servers, IPv6, source address, HELO name
and the rate cap: every failure is a clear per-recipient status, nothing is lost."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from dnsserver import DNSServer
from helpers_queue import Harness, base_settings, configure, local_root
from sinks import Sink, free_port


@pytest.fixture
def root(tmp_path_factory, tmp_path):
    return local_root(tmp_path_factory, tmp_path)


class RawServer:
    """A TCP server on 127.0.0.2 that plays a scripted, broken SMTP dialogue."""

    def __init__(self, script):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.2", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.script = script
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            f = conn.makefile("rb")
            self.script(conn, f)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def greeting_garbage(conn, f):
    conn.sendall(b"\x00\xff garbage that is not SMTP\r\n")
    time.sleep(0.2)


def huge_line(conn, f):
    conn.sendall(b"220-" + b"A" * 200000 + b"\r\n220 ok\r\n")
    time.sleep(0.2)


def close_after_mail(conn, f):
    conn.sendall(b"220 hi\r\n")
    f.readline()
    conn.sendall(b"250-hi\r\n250 PIPELINING\r\n")
    f.readline()


def silent_after_data(conn, f):
    conn.sendall(b"220 hi\r\n")
    f.readline()
    conn.sendall(b"250 hi\r\n")
    for reply in (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
        f.readline()
        conn.sendall(reply)
    time.sleep(3)                              # never answers the final dot


def endless_multiline(conn, f):
    conn.sendall(b"220 hi\r\n")
    f.readline()
    for _ in range(20000):
        conn.sendall(b"250-" + b"X" * 60 + b"\r\n")


@pytest.mark.parametrize("script,needle", [
    (greeting_garbage, "malformed reply"),
    (huge_line, "too long"),
    (close_after_mail, "closed"),
    (silent_after_data, "timeout"),
    (endless_multiline, "more than 1000 lines"),
])
def test_broken_server_defers_and_runner_goes_on(root, script, needle):
    srv = RawServer(script)
    dns = DNSServer({"bad.example": {"A": ["127.0.0.2"]}})
    try:
        configure(root, {**base_settings(dns, srv.port), "queue.command_timeout_s": 1})
        h = Harness(root)
        try:
            qid = h.enqueue("alice@example.com", ["x@bad.example"])
            h.run()
            env = h.queue.find(qid)
            r = env.recipients[0]
            assert r.status == "deferred", r
            assert needle in r.reply.lower(), r.reply
            assert h.queue.body_path(qid).exists()
        finally:
            h.close()
    finally:
        srv.close()
        dns.close()


def test_ipv6_destination_source_address_and_helo(root):
    port = free_port("::1")
    v6 = Sink("::1", port)
    v4 = Sink("127.0.0.2")
    dns = DNSServer({"six.example": {"MX": [(10, "mx6.six.example")]}, "mx6.six.example": {"AAAA": ["::1"]},
                     "four.example": {"A": ["127.0.0.2"]}})
    try:
        configure(root, {**base_settings(dns, port), "queue.helo_name": "out.example.com"})
        h = Harness(root)
        try:
            h.enqueue("alice@example.com", ["x@six.example"])
            h.run()
        finally:
            h.close()
        assert v6.recipients() == ["x@six.example"] and v6.messages[0].helo == "out.example.com"
        configure(root, {**base_settings(dns, v4.port), "queue.source_address": "127.0.0.7"})
        h = Harness(root)
        try:
            h.enqueue("alice@example.com", ["y@four.example"])
            h.run()
        finally:
            h.close()
        assert v4.messages[0].peer == "127.0.0.7"
    finally:
        v6.stop()
        v4.stop()
        dns.close()


def test_messages_per_minute_cap_spaces_deliveries(root):
    sink = Sink("127.0.0.2")
    dns = DNSServer({"far.example": {"A": ["127.0.0.2"]}})
    try:
        configure(root, {**base_settings(dns, sink.port), "queue.messages_per_minute": 300})   # one per 0.2 s
        h = Harness(root)
        try:
            for i in range(5):
                h.enqueue("alice@example.com", [f"r{i}@far.example"])
            t0 = time.monotonic()
            h.run()
            assert time.monotonic() - t0 >= 0.8
        finally:
            h.close()
        assert len(sink.messages) == 5
    finally:
        sink.stop()
        dns.close()
