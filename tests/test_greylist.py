"""Greylisting on port 25 (RFC 6647, feature-inventory §7.3): the records with a clock, and a
real server answering smtplib: first try 451, an early retry 451, a retry after the delay
250; what is never greylisted; SPF pass; a store that cannot be written; a restart."""
from __future__ import annotations

import logging
import os
import smtplib
import time
from types import SimpleNamespace

import pytest

from dnsserver import DNSServer
from engine import directory_edit, settings as settings_mod
from engine.greylist import ALLOWED, DUE, EARLY, NEW, PASSED, Greylist, client_network, record_name
from helpers_mailauth import delivered, mail
from helpers_server import make_root, running_server

BOB = "bob@example.com"
GREY = "451 4.7.1 Please Try Again Later"
DELAY_S = 1.5


def cfg(**over):
    values = {**settings_mod.defaults()["greylist"], "enabled": True, **over}
    return SimpleNamespace(**values)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the records, with a clock --------------------------------------------------------------

def test_a_triplet_waits_the_delay_then_passes_and_expires(root):
    clock = Clock()
    g = Greylist(root, cfg(delay_minutes=5, unused_expiry_hours=4, pass_expiry_days=10), clock)
    t = ("192.0.2.0/24", "a@far.example", BOB)
    assert g.look(*t) == NEW
    g.start(*t)
    clock.now += 60
    assert g.look(*t) == EARLY
    clock.now += 240
    assert g.look(*t) == DUE                       # 5 minutes after the first try
    assert g.look(*t) == PASSED
    [rec] = g.records()
    assert (rec.client, rec.sender, rec.recipient) == t and rec.passed
    clock.now += 9 * 86400
    assert g.look(*t) == PASSED                    # a use renews it (counted from the last use)
    clock.now += 9 * 86400
    assert g.look(*t) == PASSED
    clock.now += 10 * 86400 + 1
    assert g.look(*t) == NEW and g.records() == []      # unused for 10 days: gone
    # a first try never retried is forgotten after unused_expiry_hours
    g.start(*t)
    clock.now += 4 * 3600 + 1
    assert g.look(*t) == NEW
    assert g.flush() == 1 and os.listdir(g.dir) == []


def test_a_look_without_writing_changes_nothing(root):
    """`mailctl check message --to` asks look(write=False): the same answer, no record
    marked passed, no last use renewed."""
    clock = Clock()
    g = Greylist(root, cfg(delay_minutes=5, pass_expiry_days=10), clock)
    t = ("192.0.2.0/24", "a@far.example", BOB)
    g.start(*t)
    clock.now += 301
    assert g.look(*t, write=False) == DUE
    assert g.look(*t, write=False) == DUE and not g.records()[0].passed
    assert g.look(*t) == DUE and g.records()[0].passed
    clock.now += 9 * 86400
    assert g.look(*t, write=False) == PASSED
    clock.now += 2 * 86400
    assert g.look(*t) == NEW                     # the look without writing did not renew it


def test_another_process_sees_the_first_try_and_cannot_restart_it(root):
    clock = Clock()
    one, two = Greylist(root, cfg(), clock), Greylist(root, cfg(), clock)
    t = ("192.0.2.0/24", "", BOB)                  # the null sender too
    first = one.start(*t)
    clock.now += 10
    assert two.start(*t) == first                  # the record stays the first one's
    clock.now += 300
    assert two.look(*t) == DUE and one.look(*t) == PASSED


def test_file_names_are_hashes_and_junk_files_count_as_no_record(root):
    g = Greylist(root, cfg())
    t = ("192.0.2.0/24", "../../etc/passwd@x", "a\r\nb@example.com")
    g.start(*t)
    [name] = os.listdir(g.dir)
    assert name == record_name(*t) and len(name) == 32 and set(name) <= set("0123456789abcdef")
    (g.dir / name).write_bytes(b"\xff\x00 not toml")
    assert g.look(*t) == NEW                        # unreadable: greylisted anew, never refused
    assert g.records() == [] and g.flush() == 1


def test_allow_lets_a_whole_client_network_through(root):
    clock = Clock()
    g = Greylist(root, cfg(pass_expiry_days=1), clock)
    assert g.allow("192.0.2.77") == "192.0.2.0/24"
    assert g.look("192.0.2.0/24", "x@y.example", BOB) == ALLOWED
    assert g.look("198.51.100.0/24", "x@y.example", BOB) == NEW
    clock.now += 86400 + 1
    assert g.look("192.0.2.0/24", "x@y.example", BOB) == NEW


@pytest.mark.parametrize("ip, v4, v6, network", [
    ("192.0.2.77", 24, 64, "192.0.2.0/24"), ("192.0.2.77", 32, 64, "192.0.2.77/32"),
    ("::ffff:192.0.2.77", 24, 64, "192.0.2.0/24"), ("2001:db8:1:2:3::9", 24, 64, "2001:db8:1:2::/64"),
])
def test_the_client_counts_by_its_network(ip, v4, v6, network):
    assert client_network(ip, v4, v6) == network


@pytest.mark.parametrize("key, value, ok", [
    ("whitelist_networks", ["192.168.*", "10.0.?.*", "192.0.2.0/24", "2001:db8::/32", "198.51.100.7"], True),
    ("whitelist_networks", ["192.168.*/../x"], False), ("whitelist_networks", ["mail.example.com"], False),
    ("whitelist_sender_domains", ["*.example.com", "example.org"], True),
    ("whitelist_sender_domains", ["exa mple.com"], False), ("delay_minutes", 1441, False),
    ("ip_prefix_v4", 33, False), ("ip_prefix_v6", 64, True),
])
def test_settings_are_checked(key, value, ok):
    _, problems = settings_mod.validate({"greylist": {key: value}}, "", "mailctl.toml")
    assert (problems == []) == ok, problems


def test_wildcards_match_whole_addresses():
    from engine.greylist import domain_listed, ip_listed
    assert ip_listed("192.168.4.5", ["192.168.*"]) and not ip_listed("192.169.4.5", ["192.168.*"])
    assert ip_listed("::ffff:10.0.3.9", ["10.0.?.*"]) and ip_listed("2001:db8::5", ["2001:db8::/32"])
    assert not ip_listed("not-an-ip", ["*"]) and not ip_listed("192.0.2.1", [])
    assert domain_listed("a@mx.Example.COM", ["*.example.com"]) and not domain_listed("a@example.com", ["*.example.com"])
    assert not domain_listed("", ["*"])


# -- a real server ------------------------------------------------------------------------

def grey_root(tmp_path, **settings):
    values = {"queue.offline": True, "greylist.enabled": True, "greylist.delay_minutes": DELAY_S / 60,
              "greylist.whitelist_networks": [], "greylist.spf_bypass": False, **settings}
    return make_root(tmp_path, accounts={BOB: "bob-password-1", "alice@example.com": "alice-password-1"},
                     settings=values)


def rcpt(port: int, sender: str, to: str = BOB, data: bytes | None = None) -> tuple[int, str]:
    """(code, 'code text') of RCPT TO, or of the end of DATA when data is given and RCPT passed."""
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.ehlo("client.example")
        assert s.mail(sender)[0] == 250
        code, text = s.rcpt(to)
        if code == 250 and data is not None:
            code, text = s.data(data)
        return code, f"{code} {text.decode()}"


def test_first_try_451_early_retry_451_then_250_and_delivered(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mailctl")
    root = grey_root(tmp_path)
    with running_server(root) as srv:
        port = srv.ports["smtp"]
        started = time.monotonic()
        assert rcpt(port, "carol@far.example") == (451, GREY)
        assert rcpt(port, "carol@far.example") == (451, GREY)          # before the delay
        assert rcpt(port, "dave@far.example")[0] == 451                # another sender: its own triplet
        time.sleep(max(0.0, DELAY_S + 0.2 - (time.monotonic() - started)))
        assert rcpt(port, "carol@far.example", data=mail("carol@far.example", "retried"))[0] == 250
        assert rcpt(port, "carol@far.example", data=mail("carol@far.example", "again"))[0] == 250
        assert srv.runtime.counters["greylist_deferred"] == 3
        assert srv.runtime.counters["greylist_passed"] == 2
    assert [m["Subject"] for m in delivered(root)] == ["retried", "again"]
    log = caplog.text
    assert "greylist: 127.0.0.1: from=<carol@far.example> to=<bob@example.com>: deferred: first try" in log
    assert "deferred: retried too early" in log and ": passed: due" in log and ": passed: passed" in log
    assert "rejected=bob@example.com=greylist" in log
    # the records survive a restart: the triplet passes at once
    with running_server(root) as srv:
        assert rcpt(srv.ports["smtp"], "carol@far.example")[0] == 250
        assert rcpt(srv.ports["smtp"], "erin@far.example")[0] == 451


def test_who_is_never_greylisted(tmp_path):
    root = grey_root(tmp_path, **{"greylist.whitelist_sender_domains": ["*.friendly.example"],
                                  "server.postmaster": "alice@example.com"})
    cfg_ = settings_mod.load(root.config_file)
    directory_edit.add_domain(root, cfg_, "open.example")
    directory_edit.set_domain(root, cfg_, "open.example", greylisting=False)
    directory_edit.add_account(root, cfg_, "amy@open.example", "x")
    with running_server(root) as srv:
        port = srv.ports["smtp"]
        assert rcpt(port, "x@far.example", "postmaster@example.com")[0] == 250
        assert rcpt(port, "x@far.example", "Postmaster")[0] == 250       # RFC 5321 §4.5.1
        assert rcpt(port, "x@far.example", "amy@open.example")[0] == 250  # the domain's switch
        assert rcpt(port, "x@mail.friendly.example")[0] == 250
        assert rcpt(port, "x@friendly.example")[0] == 451                # the pattern names subdomains
        # authenticated submission
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20) as s:
            s.ehlo("client.example")
            s.starttls(context=_no_verify())
            s.login("alice@example.com", "alice-password-1")
            assert s.mail("alice@example.com")[0] == 250
            assert s.rcpt(BOB)[0] == 250
    # trusted networks and whitelisted clients (wildcards), and greylisting off
    for values in ({"relay.trusted_networks": ["127.0.0.0/8"]}, {"greylist.whitelist_networks": ["127.0.*"]},
                   {"greylist.whitelist_networks": ["127.0.0.1"]}, {"greylist.enabled": False}):
        root2 = grey_root(tmp_path / str(len(os.listdir(tmp_path))), **values)
        with running_server(root2) as srv:
            assert rcpt(srv.ports["smtp"], "x@far.example")[0] == 250, values
        assert not (root2.state_dir / "greylist").exists()


def test_an_unknown_recipient_is_refused_before_greylisting(tmp_path):
    with running_server(grey_root(tmp_path)) as srv:
        assert rcpt(srv.ports["smtp"], "x@far.example", "nobody@example.com")[0] == 550


def test_spf_pass_bypasses_and_dns_is_asked_once(tmp_path):
    dns = DNSServer({"pass.example": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
                     "fail.example": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]}})
    try:
        root = grey_root(tmp_path, **{"greylist.spf_bypass": True, "queue.nameservers": [dns.address],
                                      "mailauth.ignore_networks": [], "mailauth.dns_timeout_s": 0.5,
                                      "mailauth.dkim": False, "mailauth.dmarc": False})
        with running_server(root) as srv:
            port = srv.ports["smtp"]
            assert rcpt(port, "carol@pass.example", data=mail("carol@pass.example", "spf"))[0] == 250
            assert dns.queries.count(("pass.example", "TXT")) == 1     # at RCPT; reused after DATA
            assert rcpt(port, "carol@fail.example")[0] == 451
            assert rcpt(port, "carol@nothing.example")[0] == 451
        [m] = delivered(root)
        assert "spf=pass smtp.mailfrom=pass.example" in m["Authentication-Results"]
    finally:
        dns.close()


def test_a_store_that_cannot_be_written_lets_mail_through(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mailctl")
    root = grey_root(tmp_path)
    (root.state_dir / "greylist").write_text("a file where the folder goes")
    with running_server(root) as srv:
        assert rcpt(srv.ports["smtp"], "carol@far.example", data=mail("carol@far.example", "through"))[0] == 250
        assert rcpt(srv.ports["smtp"], "dave@far.example")[0] == 250
        assert srv.runtime.counters["greylist_store_errors"] == 2
    assert caplog.text.count("greylist: cannot use state/greylist") == 1


def test_the_server_removes_expired_records_by_itself(tmp_path, monkeypatch):
    from engine.accept import greylisting
    monkeypatch.setattr(greylisting, "FIRST_EXPIRY_S", 0.2)
    root = grey_root(tmp_path)
    g = Greylist(root, settings_mod.load(root.config_file).greylist, lambda: time.time() - 30 * 3600)
    g.start("192.0.2.0/24", "old@far.example", BOB)
    Greylist(root, g.cfg).start("192.0.2.0/24", "new@far.example", BOB)
    with running_server(root):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(os.listdir(g.dir)) > 1:
            time.sleep(0.1)
    assert [r.sender for r in Greylist(root, g.cfg).records(include_expired=True)] == ["new@far.example"]


def _no_verify():
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
