"""Trusted networks, bare LF from trusted clients, per-domain size limits, IPv6 binding,
TLS certificate reload, and the loud warning for open_relay_for_trusted."""
from __future__ import annotations

import os
import smtplib
import socket
import time

import pytest

from engine import directory_edit, newroot, settings as settings_mod
from engine.queue import Queue
from helpers_server import make_root, running_server, tls_context

PW = "alice-password-1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("policy"), domains=("example.com", "small.test"),
                     accounts={"alice@example.com": PW, "tiny@small.test": "tiny-password"},
                     settings={"queue.offline": True, "relay.trusted_networks": ["127.0.0.0/8"],
                               "relay.sender_must_be_local": True,
                               "listeners.smtp.bind": ["127.0.0.1", "::1"], "server.default_domain": "example.com"})
    directory_edit.set_domain(root, settings_mod.load(root.config_file), "small.test", max_message_size_mb=0.01)
    with open(root.config_file, "a") as f:        # a backup-MX route
        f.write('\n[routes."backup.example"]\naccept = true\naddresses = ["ok@backup.example"]\n')
    with running_server(root) as server:
        yield server


def test_trusted_network_submits_on_587_without_auth_but_port_25_never_relays(srv):
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=10) as s:
        assert s.sendmail("alice@example.com", ["friend@remote.example"], b"Subject: lan\r\n\r\nhi\r\n") == {}
        with pytest.raises(smtplib.SMTPSenderRefused) as e:     # relay.sender_must_be_local
            s.sendmail("stranger@remote.example", ["friend@remote.example"], b"Subject: x\r\n\r\nhi\r\n")
        assert e.value.smtp_code == 550
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
        s.ehlo("lan.test")
        s.mail("alice@example.com")
        assert s.rcpt("friend@remote.example")[0] == 550       # trusted, but port 25: no relay
    assert any(r.address == "friend@remote.example" for e in Queue(srv.root).all() for r in e.recipients)


def test_bare_lf_accepted_from_trusted_and_normalised(srv):
    raw = socket.create_connection(("127.0.0.1", srv.ports["smtp"]), timeout=10)
    f = raw.makefile("rb")
    f.readline()
    raw.sendall(b"HELO lan.test\r\nMAIL FROM:<x@lan.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
    for _ in range(4):
        f.readline()
    raw.sendall(b"Subject: bare\nX-A: 1\n\nline one\nline two\r\n.\r\n")
    assert f.readline().startswith(b"250 2.0.0")
    raw.close()
    new = srv.root.mail_dir / "example.com" / "alice" / "new"
    last = max((new / n for n in os.listdir(new)), key=lambda p: p.stat().st_mtime_ns).read_bytes()
    assert b"Subject: bare\nX-A: 1\n\nline one\nline two\n" in last and b"\r" not in last


def test_per_domain_size_limit(srv):
    big = b"Subject: big\r\n\r\n" + b"z" * 20000 + b"\r\n"
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
        s.ehlo("x.test")
        s.mail("x@foreign.org", ["SIZE=%d" % len(big)])
        code, text = s.rcpt("tiny@small.test")
        assert code == 552 and text.startswith(b"5.3.4"), text
        s.rset()
        s.mail("x@foreign.org")
        assert s.rcpt("tiny@small.test")[0] == 250
        code, text = s.data(big)
        assert code == 552, text
        assert s.sendmail("x@foreign.org", ["alice@example.com"], big) == {}   # other domains: global limit


def test_listens_on_ipv6_too(srv):
    s = smtplib.SMTP("::1", srv.ports["smtp"], timeout=10)
    assert s.ehlo("v6.test")[0] == 250
    s.quit()


def test_certificate_reloaded_when_files_change(srv):
    def peer_cn():
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=10) as s:
            s.starttls(context=tls_context())
            der = s.sock.getpeercert(binary_form=True)
        from cryptography import x509
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()

    assert peer_cn() == "CN=localhost"
    newroot.make_self_signed(srv.root, "mail.renewed.example")
    time.sleep(1.2)
    assert peer_cn() == "CN=mail.renewed.example"
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], context=tls_context(), timeout=10) as s:
        from cryptography import x509
        assert "renewed" in x509.load_der_x509_certificate(s.sock.getpeercert(binary_form=True)).subject.rfc4514_string()


def test_open_relay_for_trusted_relays_and_warns(tmp_path):
    import logging
    root = make_root(tmp_path, accounts={"alice@example.com": PW},
                     settings={"queue.offline": True, "relay.trusted_networks": ["127.0.0.1/32"],
                               "relay.open_relay_for_trusted": True})
    records: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Catch()
    logging.getLogger("mailctl").addHandler(handler)
    try:
        with running_server(root) as server:
            with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
                assert s.sendmail("x@lan.test", ["far@remote.example"], b"Subject: r\r\n\r\nhi\r\n") == {}
    finally:
        logging.getLogger("mailctl").removeHandler(handler)
    assert any("open_relay_for_trusted is on" in r and "RELAY" in r for r in records)


def test_login_with_default_domain_and_disabled_account(srv):
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], context=tls_context(), timeout=10) as s:
        assert s.login("alice", PW)[0] == 235                  # server.default_domain
    directory_edit.set_account(srv.root, settings_mod.load(srv.root.config_file), "tiny@small.test", enabled=False)
    time.sleep(1.5)                                            # picked up by the config watcher
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], context=tls_context(), timeout=10) as s:
        try:
            s.login("tiny@small.test", "tiny-password")
            raise AssertionError("a disabled account logged in")
        except smtplib.SMTPAuthenticationError as e:
            assert e.smtp_code == 535
    srv.runtime.bans.remove("127.0.0.1") if srv.runtime.bans.is_banned("127.0.0.1") else None


def test_helo_forms(srv):
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
        assert s.ehlo("[IPv6:::1]")[0] == 250
        assert s.ehlo("[127.0.0.1]")[0] == 250
        assert s.docmd("EHLO", "bad host name")[0] == 501
        assert s.docmd("HELO", "(evil)")[0] == 501


def test_backup_mx_route_accepts_listed_addresses_only(srv):
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
        s.ehlo("mx.test")
        s.mail("x@foreign.org")
        assert s.rcpt("ok@backup.example")[0] == 250
        assert s.rcpt("other@backup.example") == (550, b"5.1.1 Reciprient Not In Route List")
        assert s.data(b"Subject: backup\r\n\r\nhi\r\n")[0] == 250
    assert any(r.address == "ok@backup.example" for e in Queue(srv.root).all() for r in e.recipients)
