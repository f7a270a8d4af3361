"""Smart host (STARTTLS + AUTH), per-domain routes, route validation, offline mode and
required TLS, against real SMTP sinks on loopback."""
from __future__ import annotations

import asyncio
import ssl
import threading
import time

import pytest

from dnsserver import DNSServer
from engine.outbound import routes
from helpers_queue import Harness, base_settings, configure, local_root
from sinks import Sink


@pytest.fixture
def root(tmp_path_factory, tmp_path):
    return local_root(tmp_path_factory, tmp_path)


@pytest.fixture
def dns():
    d = DNSServer({"far.example": {"MX": [(10, "mx.far.example")]}, "mx.far.example": {"A": ["127.0.0.2"]},
                   "secure.example": {"MX": [(10, "mx.far.example")]}})
    yield d
    d.close()


def server_tls(root) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(root.tls_dir / "cert.pem", root.tls_dir / "key.pem")
    return ctx


def test_smarthost_with_starttls_and_auth(root, dns):
    relay = Sink("127.0.0.4", tls_context=server_tls(root), auth={"relayuser": "relay-secret"}, require_auth=True)
    try:
        (root.path / "relay.pass").write_text("relay-secret\n")
        configure(root, {**base_settings(dns, 1), "smarthost.host": "127.0.0.4", "smarthost.port": relay.port,
                         "smarthost.tls": "starttls", "smarthost.username": "relayuser",
                         "smarthost.password_file": "relay.pass"})
        h = Harness(root)
        try:
            h.enqueue("alice@example.com", ["x@anywhere.example", "y@far.example"])
            h.run()
            assert h.queue.count() == 0
        finally:
            h.close()
        [m] = relay.messages                  # one transaction: the relay sorts domains out
        assert sorted(relay.recipients()) == ["x@anywhere.example", "y@far.example"]
        assert all(x.tls and x.auth_user == "relayuser" for x in relay.messages)
    finally:
        relay.stop()


def test_smarthost_refusing_login_defers(root, dns):
    relay = Sink("127.0.0.4", tls_context=server_tls(root), auth={"relayuser": "other"}, require_auth=True)
    try:
        (root.path / "relay.pass").write_text("wrong\n")
        configure(root, {**base_settings(dns, 1), "smarthost.host": "127.0.0.4", "smarthost.port": relay.port,
                         "smarthost.username": "relayuser", "smarthost.password_file": "relay.pass"})
        h = Harness(root)
        try:
            qid = h.enqueue("alice@example.com", ["x@anywhere.example"])
            h.run()
            env = h.queue.find(qid)
            assert env.recipients[0].status == "deferred" and "refused our login" in env.recipients[0].reply
        finally:
            h.close()
        assert not relay.messages
    finally:
        relay.stop()


def test_route_for_one_domain(root, dns):
    mx = Sink("127.0.0.2")
    inner = Sink("127.0.0.3")
    try:
        configure(root, {**base_settings(dns, mx.port), "routes.internal.example.host": "127.0.0.3",
                         "routes.internal.example.port": inner.port, "routes.internal.example.tls": "none"})
        h = Harness(root)
        try:
            h.enqueue("alice@example.com", ["a@internal.example", "b@far.example"])
            h.run()
        finally:
            h.close()
        assert inner.recipients() == ["a@internal.example"] and mx.recipients() == ["b@far.example"]
    finally:
        mx.stop()
        inner.stop()


def test_route_problems_are_reported_with_lines(root):
    with open(root.config_file, "a") as f:
        f.write('\n[routes."good.example"]\nhost = "10.0.0.1"\n'
                '\n[routes."bad.example"]\nhost = "10.0.0.2"\nport = 0\ncolour = "blue"\ntls = "maybe"\n'
                '\n[routes."nohost.example"]\nport = 25\n')
    problems = routes.check(root)
    text = root.config_file.read_text().splitlines()
    assert len(problems) == 4, problems
    for p in problems:
        where, line, key, _ = p.split(":", 3)
        assert where == "mailctl.toml"
        assert key.strip().split(".")[-1] in text[int(line) - 1] or "[routes" in text[int(line) - 1]
    assert any("routes.bad.example.port: must be a port number" in p for p in problems)
    assert any("routes.bad.example.colour: unknown key" in p for p in problems)
    assert any("routes.nohost.example.host" in p for p in problems)


def test_offline_holds_until_flush(root, dns):
    sink = Sink("127.0.0.2")
    configure(root, {**base_settings(dns, sink.port), "queue.offline": True})
    h = Harness(root)
    stopping = asyncio.Event()
    thread = threading.Thread(target=lambda: h.loop.run_until_complete(h.runner.serve(stopping)), daemon=True)
    try:
        h.enqueue("alice@example.com", ["x@far.example"])
        thread.start()
        time.sleep(2.5)                       # more than one poll interval
        assert not sink.messages and h.queue.count() == 1
        h.queue.request_flush()
        assert sink.wait_for(1, 10)
        deadline = time.monotonic() + 5
        while h.queue.count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert h.queue.count() == 0
        h.enqueue("alice@example.com", ["y@far.example"])      # still offline afterwards
        time.sleep(1.5)
        assert len(sink.messages) == 1
    finally:
        h.loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        h.close()
        sink.stop()


def test_required_tls_defers_when_not_offered(root, dns):
    sink = Sink("127.0.0.2")
    try:
        configure(root, {**base_settings(dns, sink.port), "queue.require_tls_domains": ["secure.example"]})
        h = Harness(root)
        try:
            qid = h.enqueue("alice@example.com", ["a@secure.example"])
            h.enqueue("alice@example.com", ["b@far.example"])
            h.run()
            env = h.queue.find(qid)
            assert env.recipients[0].status == "deferred" and "4.7.4" in env.recipients[0].reply
        finally:
            h.close()
        assert sink.recipients() == ["b@far.example"]
    finally:
        sink.stop()


def test_backup_mx_route_accepts_and_skips_itself(root, dns):
    from engine import settings as settings_mod
    primary = Sink("127.0.0.2")
    try:
        dns.set("backup.example", {"MX": [(10, "mx.far.example"), (20, "us.backup.example")]})
        dns.set("us.backup.example", {"A": ["127.0.0.1"]})
        configure(root, {**base_settings(dns, primary.port), "routes.backup.example.accept": True,
                         "routes.backup.example.addresses": ["listed@backup.example"],
                         "listeners.smtp.port": primary.port})   # 127.0.0.1:<that port> is "us"
        s = settings_mod.load(root.config_file)
        assert routes.inbound(s, "listed@backup.example") == (True, None)
        assert routes.inbound(s, "other@backup.example") == (False, "550 Reciprient Not In Route List")
        assert routes.inbound(s, "x@far.example") == (False, None)
        primary.stop()                           # the primary MX is down: we must not loop to ourselves
        h = Harness(root)
        try:
            qid = h.enqueue("alice@example.com", ["listed@backup.example"])
            h.run()
            r = h.queue.find(qid).recipients[0]
            assert r.status == "deferred"
        finally:
            h.close()
    finally:
        primary.stop()


@pytest.mark.parametrize("mx_name,ok", [("mail.example.com", True), ("wrong.example.com", False)])
def test_required_tls_verifies_the_certificate(root, dns, mx_name, ok):
    sink = Sink("127.0.0.2", tls_context=server_tls(root))        # certificate for mail.example.com
    try:
        dns.set("secure.example", {"MX": [(10, mx_name)]})
        dns.set(mx_name, {"A": ["127.0.0.2"]})
        configure(root, {**base_settings(dns, sink.port), "queue.require_tls_domains": ["secure.example"],
                         "queue.tls_ca_file": str(root.tls_dir / "cert.pem")})
        h = Harness(root)
        try:
            qid = h.enqueue("alice@example.com", ["a@secure.example"])
            h.run()
            if ok:
                assert h.queue.count() == 0 and sink.messages[0].tls
            else:
                r = h.queue.find(qid).recipients[0]
                assert r.status == "deferred" and "4.7.5" in r.reply and not sink.messages
        finally:
            h.close()
    finally:
        sink.stop()
