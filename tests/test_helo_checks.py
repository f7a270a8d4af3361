"""The HELO and sender checks of port 25 ([helo_checks], engine/accept/helochecks.py): a real
server answering smtplib from 127.0.0.x, the loopback DNS server serving PTR, A, MX and
null MX records and a zone that times out. Each check off, scoring or refusing at RCPT;
forward-confirmed reverse DNS pass, none, mismatch and timeout; a HELO naming us from
outside and from a trusted network; sender domains with MX, A, a null MX, none, or DNS
that fails."""
from __future__ import annotations

import contextlib
import logging
import smtplib

import pytest

from dnsserver import DNSServer
from engine import settings as settings_mod
from engine.accept import CONTINUE, Score
from helpers_mailauth import mail
from helpers_server import make_root, running_server

BOB = "bob@example.com"
HOST = "mx.example.com"
CHECKS = ("helo_syntax", "helo_forged", "reverse_dns", "sender_domain")
GOOD_HELO = "client.example.net"
GOOD_SENDER = "carol@mx.example.org"

ZONE = {
    # 127.0.0.1: confirmed; .2: its name points elsewhere; .3: no PTR; .4: PTR times out;
    # .5: two names, the second confirms; .6: the PTR name's A times out
    "1.0.0.127.in-addr.arpa": {"PTR": ["client.example.net"]},
    "client.example.net": {"A": ["127.0.0.1"]},
    "2.0.0.127.in-addr.arpa": {"PTR": ["other.example.net"]},
    "other.example.net": {"A": ["192.0.2.9"]},
    "4.0.0.127.in-addr.arpa": "TIMEOUT",
    "5.0.0.127.in-addr.arpa": {"PTR": ["nothing.example.net", "five.example.net"]},
    "five.example.net": {"A": ["192.0.2.1", "127.0.0.5"]},
    "6.0.0.127.in-addr.arpa": {"PTR": ["slow.example.net"]},
    "slow.example.net": "TIMEOUT",
    # sender domains
    "mx.example.org": {"MX": [(10, "in.mx.example.org")]},
    "aonly.example.org": {"A": ["192.0.2.7"]},
    "aaaa.example.org": {"AAAA": ["2001:db8::7"]},
    "nullmx.example.org": {"MX": [(0, ".")]},
    "nodata.example.org": {"TXT": ["v=spf1 -all"]},
    "slow.example.org": "TIMEOUT",
    "broken.example.org": "SERVFAIL",
}


@contextlib.contextmanager
def checked_server(tmp_path, modes: dict | None = None, **settings):
    """(server, dns server, scores seen after DATA): checks on for 127.0.0.0/8."""
    dns = DNSServer(ZONE)
    values = {"queue.offline": True, "server.hostname": HOST, "queue.nameservers": [dns.address],
              "mailauth.dns_timeout_s": 0.5, "helo_checks.ignore_networks": [],
              **{f"helo_checks.{k}": v for k, v in (modes or {}).items()}, **settings}
    root = make_root(tmp_path, accounts={BOB: "bob-password-1", "alice@example.com": "alice-password-1"},
                     settings=values)
    seen: list[list[Score]] = []
    try:
        with running_server(root) as srv:
            srv.runtime.pipeline.add(lambda a: seen.append(list(a.scores)) or CONTINUE, before="deliver")
            yield srv, dns, seen
    finally:
        dns.close()


def session(port: int, helo: str = GOOD_HELO, sender: str = GOOD_SENDER, rcpts=(BOB,), source: str = "127.0.0.1",
            data: bool = True) -> list[tuple[int, str]]:
    """(code, 'code text') of each RCPT, then of the end of DATA when a recipient passed."""
    out = []
    with smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=(source, 0)) as s:
        s.ehlo(helo)
        assert s.mail(sender)[0] == 250
        for to in rcpts:
            code, text = s.rcpt(to)
            out.append((code, f"{code} {text.decode()}"))
        if data and any(code == 250 for code, _ in out):
            code, text = s.data(mail(sender, "checked"))
            out.append((code, f"{code} {text.decode()}"))
    return out


def reasons(seen) -> list[str]:
    [scores] = seen
    seen.clear()
    return [s.reason for s in scores]


# -- each check off, scoring, refusing ---------------------------------------------------------

# (check, helo, sender, client address, what its reason / reply says)
FAILING = [
    ("helo_syntax", "bad_name.example.net", GOOD_SENDER, "127.0.0.1", "HELO name has an underscore"),
    ("helo_forged", HOST, GOOD_SENDER, "127.0.0.1", "HELO names our host name"),
    ("reverse_dns", "three.example.net", GOOD_SENDER, "127.0.0.3", "client 127.0.0.3 has no reverse DNS (PTR)"),
    ("sender_domain", GOOD_HELO, "x@nodata.example.org", "127.0.0.1",
     "sender domain nodata.example.org has neither MX nor A/AAAA records"),
]


@pytest.mark.parametrize("mode", ["off", "score", "reject"])
def test_each_check_off_scores_or_refuses(tmp_path, caplog, mode):
    caplog.set_level(logging.INFO, logger="mailctl")
    modes = {**{c: mode for c in CHECKS}, **{f"{c}_score": 1.5 + i for i, c in enumerate(CHECKS)}}
    with checked_server(tmp_path, modes) as (srv, dns, seen):
        port = srv.ports["smtp"]
        assert [c for c, _ in session(port)] == [250, 250]              # all well: nothing said
        assert reasons(seen) == []
        for i, (check, helo, sender, source, why) in enumerate(FAILING):
            got = session(port, helo, sender, rcpts=(BOB, "alice@example.com"), source=source)
            if mode == "reject":
                assert [c for c, _ in got] == [550, 550], (check, got)
                said = why if check != "sender_domain" else "Sender Domain Does Not Have Any MX Records (nodata."
                assert said in got[0][1] and got[0][1].startswith("550 5.7.1 "), got
                assert srv.runtime.counters[f"{check}_rejected"] == 1      # once per transaction
                assert f"rejected=bob@example.com={check},alice@example.com={check}" in caplog.text
                continue
            assert [c for c, _ in got] == [250, 250, 250], (check, got)
            if mode == "off":
                assert reasons(seen) == [] and f"{check}_scored" not in srv.runtime.counters
            else:
                assert reasons(seen) == [why]                            # once, for two recipients
                assert srv.runtime.counters[f"{check}_scored"] == 1
                assert f"helo_checks: {source}: helo={helo} from=<{sender}>: {check} scored {1.5 + i:g}: {why}" \
                    in caplog.text
        if mode == "off":                 # 'off' asks DNS nothing
            assert not any(t in ("PTR", "MX") for _, t in dns.queries), dns.queries


def test_scores_arrive_with_their_configured_points(tmp_path):
    modes = {c: "score" for c in CHECKS} | {"helo_syntax_score": 2.5, "reverse_dns_score": -0.5}
    with checked_server(tmp_path, modes) as (srv, dns, seen):
        session(srv.ports["smtp"], "single", "x@nullmx.example.org", source="127.0.0.3")
        [scores] = seen
    assert scores == [Score(2.5, "HELO is not a fully qualified domain name (one label)"),
                      Score(-0.5, "client 127.0.0.3 has no reverse DNS (PTR)"),
                      Score(3.0, "sender domain nullmx.example.org has a null MX (accepts no mail)")]


# -- forward-confirmed reverse DNS -------------------------------------------------------------

def test_reverse_dns_pass_none_mismatch_and_timeout(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mailctl")
    with checked_server(tmp_path, {c: "off" for c in CHECKS} | {"reverse_dns": "reject"}) as (srv, dns, seen):
        port = srv.ports["smtp"]
        assert session(port, source="127.0.0.1")[0][0] == 250          # PTR and A agree
        assert session(port, source="127.0.0.5")[0][0] == 250          # the second PTR name confirms
        [(code, text)] = session(port, source="127.0.0.2")
        assert text == ("550 5.7.1 Rejected: reverse DNS of client 127.0.0.2 (other.example.net) does not "
                        "resolve back to it")
        [(code, text)] = session(port, source="127.0.0.3")
        assert text == "550 5.7.1 Rejected: client 127.0.0.3 has no reverse DNS (PTR)"
        # DNS that never answers decides nothing: accepted, logged, counted
        assert [c for c, _ in session(port, source="127.0.0.4")] == [250, 250]
        assert [c for c, _ in session(port, source="127.0.0.6")] == [250, 250]
        assert srv.runtime.counters["reverse_dns_unsure"] == 2
        assert "reverse_dns_rejected" in srv.runtime.counters and "reverse_dns_scored" not in srv.runtime.counters
    assert "helo_checks: 127.0.0.4: helo=client.example.net from=<carol@mx.example.org>: reverse_dns unsure: " \
           "reverse DNS of 127.0.0.4: PTR: DNS timeout" in caplog.text
    assert "reverse DNS of 127.0.0.6: A of the PTR name: DNS timeout" in caplog.text


def test_the_connection_asks_dns_once(tmp_path):
    with checked_server(tmp_path, {c: "score" for c in CHECKS}) as (srv, dns, seen):
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20, source_address=("127.0.0.2", 0)) as s:
            for sender in ("a@mx.example.org", "b@mx.example.org", "c@aonly.example.org"):
                s.ehlo(GOOD_HELO)
                s.mail(sender)
                assert s.rcpt(BOB)[0] == 250 and s.rcpt("alice@example.com")[0] == 250
                assert s.data(mail(sender, "one of three"))[0] == 250
        assert dns.queries.count(("2.0.0.127.in-addr.arpa", "PTR")) == 1    # one connection, one PTR
        assert dns.queries.count(("mx.example.org", "MX")) == 2              # one per transaction
        assert srv.runtime.counters["reverse_dns_scored"] == 3               # noted per transaction
    assert [reasons([s]) for s in seen] == [["reverse DNS of client 127.0.0.2 (other.example.net) does not "
                                             "resolve back to it"]] * 3


# -- a HELO naming us ---------------------------------------------------------------------------

@pytest.mark.parametrize("helo, source, forged", [
    (HOST, "127.0.0.1", True), ("MX.Example.COM", "127.0.0.1", True), ("example.com", "127.0.0.1", True),
    ("[127.0.0.1]", "127.0.0.2", True), ("127.0.0.1", "127.0.0.2", True),
    ("[127.0.0.1]", "127.0.0.1", False),       # the client's own address: that is what a literal is for
    ("mail.example.com", "127.0.0.1", False), ("client.example.net", "127.0.0.1", False),
])
def test_a_helo_naming_us_from_outside(tmp_path, helo, source, forged):
    with checked_server(tmp_path, {c: "off" for c in CHECKS} | {"helo_forged": "reject"}) as (srv, dns, seen):
        [(code, text), *_] = session(srv.ports["smtp"], helo, source=source)
    assert (code == 550) == forged, text
    if forged:
        assert text.startswith("550 5.7.1 Rejected: HELO names ") and "you are not this server" in text


def test_the_same_helo_from_a_trusted_network_or_an_authenticated_client_passes(tmp_path):
    with checked_server(tmp_path, {c: "reject" for c in CHECKS},
                        **{"relay.trusted_networks": ["127.0.0.7/32"]}) as (srv, dns, seen):
        port = srv.ports["smtp"]
        assert session(port, HOST, "x@nullmx.example.org", source="127.0.0.7")[0][0] == 250
        assert session(port, HOST, "x@nullmx.example.org", source="127.0.0.1")[0][0] == 550
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20, source_address=("127.0.0.3", 0)) as s:
            s.ehlo("single")
            s.starttls(context=_no_verify())
            s.ehlo(HOST)
            s.login("alice@example.com", "alice-password-1")
            assert s.mail("alice@example.com")[0] == 250
            assert s.rcpt(BOB)[0] == 250
        assert not any(q[0] == "3.0.0.127.in-addr.arpa" for q in dns.queries)


def test_ignore_networks_and_mail_to_postmaster(tmp_path):
    with checked_server(tmp_path, {c: "reject" for c in CHECKS},
                        **{"helo_checks.ignore_networks": ["127.0.0.8"],
                           "server.postmaster": "alice@example.com"}) as (srv, dns, seen):
        port = srv.ports["smtp"]
        assert session(port, HOST, source="127.0.0.8")[0][0] == 250
        assert reasons(seen) == []
        # postmaster must reach someone (RFC 5321 §4.5.1): a refusal only scores
        got = session(port, HOST, rcpts=("postmaster@example.com", BOB))
        assert [c for c, _ in got] == [250, 550, 250]
        assert reasons(seen) == ["HELO names our host name"]


# -- the sender's domain ------------------------------------------------------------------------

@pytest.mark.parametrize("domain, reply", [
    ("mx.example.org", None), ("aonly.example.org", None), ("aaaa.example.org", None), ("example.com", None),
    ("nullmx.example.org", "550 5.7.27 Sender domain nullmx.example.org accepts no mail (null MX, RFC 7505)"),
    ("gone.example.org", "550 5.7.1 Sender Domain Does Not Have Any MX Records (gone.example.org has neither "
                         "MX nor A/AAAA, so it cannot receive replies)"),
    ("nodata.example.org", "550 5.7.1 Sender Domain Does Not Have Any MX Records (nodata.example.org has "
                           "neither MX nor A/AAAA, so it cannot receive replies)"),
    ("slow.example.org", None), ("broken.example.org", None),        # DNS failure: never refused
])
def test_sender_domains(tmp_path, domain, reply):
    with checked_server(tmp_path, {c: "off" for c in CHECKS} | {"sender_domain": "reject"}) as (srv, dns, seen):
        got = session(srv.ports["smtp"], sender=f"someone@{domain}")
        if reply is None:
            assert [c for c, _ in got] == [250, 250]
        else:
            assert got == [(550, reply)]
        unsure = domain in ("slow.example.org", "broken.example.org")
        assert srv.runtime.counters.get("sender_domain_unsure", 0) == unsure
        if domain == "example.com":               # ours: not asked
            assert ("example.com", "MX") not in dns.queries


def test_the_null_sender_is_not_asked_about(tmp_path):
    with checked_server(tmp_path, {c: "off" for c in CHECKS} | {"sender_domain": "reject"}) as (srv, dns, seen):
        assert [c for c, _ in session(srv.ports["smtp"], sender="")] == [250, 250]
        assert not any(t == "MX" for _, t in dns.queries)


# -- settings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, ok", [
    ("helo_syntax", "reject", True), ("helo_forged", "refuse", False), ("reverse_dns", "", False),
    ("sender_domain_score", 2.5, True), ("sender_domain_score", 1000, False), ("helo_syntax_score", "x", False),
    ("ignore_networks", ["10.0.0.0/8"], True), ("ignore_networks", ["not-a-net"], False),
])
def test_settings_are_checked(key, value, ok):
    _, problems = settings_mod.validate({"helo_checks": {key: value}}, "", "mailctl.toml")
    assert (problems == []) == ok, problems


def test_the_defaults_score_and_refuse_only_a_sender_domain_that_receives_nothing():
    d = settings_mod.defaults()["helo_checks"]
    assert [d[c] for c in CHECKS] == ["score", "score", "score", "reject"]
    assert d["ignore_networks"] == ["127.0.0.0/8", "::1/128"]


def _no_verify():
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# -- the DNS questions themselves (engine/mailauth/fcrdns.py) ------------------------------------

def test_reverse_dns_of_ipv6_mapped_and_classless_delegation():
    from engine.mailauth import fcrdns
    dns = DNSServer({
        "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa": {"PTR": ["six.example.net"]},
        "six.example.net": {"AAAA": ["2001:db8::5"], "A": ["192.0.2.5"]},
        "5.2.0.192.in-addr.arpa": {"CNAME": "5.0-26.2.0.192.in-addr.arpa"},      # RFC 2317
        "5.0-26.2.0.192.in-addr.arpa": {"PTR": ["six.example.net"]},
        "6.2.0.192.in-addr.arpa": {"PTR": ["six.example.net"]},
    })
    try:
        r = dns.resolver()
        assert fcrdns.reverse_dns(r, "2001:db8::5") == fcrdns.ReverseDNS(fcrdns.PASS, "six.example.net")
        assert fcrdns.reverse_dns(r, "::ffff:192.0.2.5") == fcrdns.ReverseDNS(fcrdns.PASS, "six.example.net")
        assert fcrdns.reverse_dns(r, "192.0.2.6") == fcrdns.ReverseDNS(fcrdns.MISMATCH, "six.example.net")
        assert fcrdns.reverse_dns(r, "not an address").result == fcrdns.NONE
        assert ("six.example.net", "AAAA") in dns.queries         # an IPv6 client: its AAAA records
    finally:
        dns.close()
