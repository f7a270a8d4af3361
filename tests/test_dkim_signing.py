"""DKIM: keys made by `mailctl dkim keygen`, published in the test DNS server, sign mail
at send time; the delivered message verifies with dkimpy against that DNS."""
from __future__ import annotations

import json
import logging
import sys

import dkim
import dns.resolver
import pytest

from conftest import run_cli
from dnsserver import DNSServer
from helpers_queue import Harness, base_settings, configure, local_root, message
from sinks import Sink


@pytest.fixture
def root(tmp_path_factory, tmp_path):
    return local_root(tmp_path_factory, tmp_path)


@pytest.fixture
def net():
    dns_server = DNSServer({"far.example": {"MX": [(10, "mx.far.example")]}, "mx.far.example": {"A": ["127.0.0.2"]}})
    sink = Sink("127.0.0.2")
    yield dns_server, sink
    sink.stop()
    dns_server.close()


def dnsfunc_for(server: DNSServer):
    resolver = server.resolver()

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(name.rstrip("."), "TXT")
        except dns.resolver.NXDOMAIN:
            return None
        return b"".join(b"".join(r.strings) for r in answer)
    return dnsfunc


@pytest.mark.parametrize("algorithm", ["rsa2048", "ed25519"])
def test_delivered_message_verifies(root, net, algorithm):
    dns_server, sink = net
    r = run_cli(root, "dkim", "keygen", "example.com", "--selector", "s1", "--algorithm", algorithm, "--json")
    assert r.code == 0, r.err
    key = json.loads(r.out)
    assert key["record_name"] == "s1._domainkey.example.com" and key["file"] == "dkim/example.com.s1.key"
    dns_server.set(key["record_name"], {"TXT": [key["record"]]})
    configure(root, base_settings(dns_server, sink.port))
    h = Harness(root)
    try:
        h.enqueue("alice@example.com", ["x@far.example"],
                  message("alice@example.com", ["x@far.example"], "signed mail", "body line\r\n" * 20))
        h.run()
    finally:
        h.close()
    [m] = sink.messages
    assert m.data.startswith(b"DKIM-Signature:")
    assert b"d=example.com" in m.data and b"s=s1" in m.data and b"c=relaxed/relaxed" in m.data
    assert (b"a=ed25519-sha256" if algorithm == "ed25519" else b"a=rsa-sha256") in m.data
    assert dkim.verify(m.data, dnsfunc=dnsfunc_for(dns_server))
    tampered = m.data.replace(b"body line", b"BODY LINE", 1)
    assert not dkim.verify(tampered, dnsfunc=dnsfunc_for(dns_server))


def test_new_key_used_without_restart_and_foreign_from_not_signed(root, net):
    dns_server, sink = net
    configure(root, base_settings(dns_server, sink.port))
    h = Harness(root)
    try:
        h.enqueue("alice@example.com", ["a@far.example"], message("alice@example.com", ["a@far.example"], "before"))
        h.run()
        assert run_cli(root, "dkim", "keygen", "example.com").code == 0       # while the runner lives
        h.enqueue("alice@example.com", ["b@far.example"], message("alice@example.com", ["b@far.example"], "after"))
        h.enqueue("x@other.example", ["c@far.example"], message("x@other.example", ["c@far.example"], "foreign"))
        h.run()
    finally:
        h.close()
    by_subject = {m.data.split(b"Subject: ")[1].split(b"\r\n")[0]: m.data for m in sink.messages}
    assert not by_subject[b"before"].startswith(b"DKIM-Signature")
    assert by_subject[b"after"].startswith(b"DKIM-Signature") and b"s=mailctl" in by_subject[b"after"]
    assert b"DKIM-Signature" not in by_subject[b"foreign"]


def test_no_unsigned_mail_when_the_dkim_module_is_missing(root, net, monkeypatch, caplog):
    """A domain with a key is signed or waits: without dkimpy the message stays queued,
    deferred with the reason (also in the log), and goes out signed once it is back."""
    dns_server, sink = net
    configure(root, base_settings(dns_server, sink.port))
    assert run_cli(root, "dkim", "keygen", "example.com").code == 0
    h = Harness(root)
    try:
        h.enqueue("alice@example.com", ["x@far.example"], message("alice@example.com", ["x@far.example"], "wait"))
        with monkeypatch.context() as m, caplog.at_level(logging.ERROR, logger="mailctl.queue"):
            m.setitem(sys.modules, "dkim", None)          # import dkim fails
            h.run()
        assert not sink.messages
        [env] = h.queue.all()
        [r] = env.recipients
        assert r.status == "deferred" and r.dsn == "4.3.0" and "dkimpy" in r.reply, r
        assert "not sent, DKIM signing is impossible" in caplog.text and env.id in caplog.text
        h.run(force=True)
    finally:
        h.close()
    [m] = sink.messages
    assert m.data.startswith(b"DKIM-Signature:")
    assert not h.queue.all()


def test_no_unsigned_mail_when_the_key_cannot_be_read(root, net):
    dns_server, sink = net
    configure(root, base_settings(dns_server, sink.port))
    root.dkim_dir.mkdir(parents=True, exist_ok=True)
    (root.dkim_dir / "example.com.broken.key").write_text("not a key\n")
    h = Harness(root)
    try:
        h.enqueue("alice@example.com", ["x@far.example"], message("alice@example.com", ["x@far.example"], "bad key"))
        h.run()
        assert not sink.messages
        [env] = h.queue.all()
        assert env.recipients[0].status == "deferred" and "cannot be read" in env.recipients[0].reply
    finally:
        h.close()


def test_dkim_cli_errors_and_show(root):
    r = run_cli(root, "dkim", "show", "example.com")
    assert r.code == 1 and "dkim keygen" in r.err
    r = run_cli(root, "dkim", "keygen", "notours.example")
    assert r.code == 1 and "not a local domain" in r.err
    r = run_cli(root, "dkim", "keygen", "example.com", "--selector", "../evil")
    assert r.code == 1 and "selector" in r.err
    assert run_cli(root, "dkim", "keygen", "example.com").code == 0
    r = run_cli(root, "dkim", "keygen", "example.com")
    assert r.code == 1 and "--force" in r.err
    r = run_cli(root, "dkim", "show", "example.com", "--json")
    [k] = json.loads(r.out)
    assert k["record"].startswith("v=DKIM1; k=rsa; p=")
    assert list((root.path / "dkim").iterdir()) == [root.path / "dkim" / "example.com.mailctl.key"]


def test_unreadable_key_reason_names_no_server_path(root, net):
    """The deferral reason is kept in the queue and may go to the sender in a delay
    notice: it says the key cannot be read, never where the key lives."""
    dns_server, sink = net
    configure(root, base_settings(dns_server, sink.port))
    (root.dkim_dir / "example.com.broken.key").mkdir(parents=True)   # read() fails: EISDIR
    h = Harness(root)
    try:
        h.enqueue("alice@example.com", ["x@far.example"], message("alice@example.com", ["x@far.example"], "eisdir"))
        h.run()
        assert not sink.messages
        [env] = h.queue.all()
        reply = env.recipients[0].reply
        assert "cannot be read" in reply and str(root.path) not in reply and "/" not in reply.split("dkim/", 1)[1], reply
    finally:
        h.close()
