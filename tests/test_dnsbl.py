"""DNS block lists (engine/dnsbl.py, engine/accept/dnslists.py) against the loopback DNS
server: DNSBL on the client IP (IPv4 reversed octets, IPv6 reversed nibbles) at RCPT,
RHSBL on the sender and HELO domains, URI lists on the domains of URLs in the body
(plain, quoted-printable, HTML, base64), expected answers (wildcards, bit masks), reject
texts, and a list that times out, fails or answers garbage: never a 5xx."""
from __future__ import annotations

import base64

import pytest

from engine import dnsbl, uridomains
from helpers_dnsbl import BOB, block_list, delivered, list_server, listed, message, send


# -- names and answers ------------------------------------------------------------------

def test_the_names_asked():
    assert dnsbl.reversed_ip("192.0.2.1") == "1.2.0.192"
    assert dnsbl.reversed_ip("::ffff:192.0.2.1") == "1.2.0.192"
    assert dnsbl.reversed_ip("2001:db8::1") == "1." + "0." * 23 + "8.b.d.0.1.0.0.2"
    assert dnsbl.ip_query("bl.example", "2001:db8::1").name.endswith(".8.b.d.0.1.0.0.2.bl.example")
    assert dnsbl.ip_query("bl.example", "not an ip") is None
    assert dnsbl.domain_query("dbl.example", "Spam.Example.").name == "spam.example.dbl.example"
    assert dnsbl.domain_query("dbl.example", "a..b") is None and dnsbl.domain_query("dbl.example", "x" * 250) is None


@pytest.mark.parametrize("answer, patterns, expected", [
    ("127.0.0.2", ["127.0.0.2"], True),
    ("127.0.0.3", ["127.0.0.2"], False),
    ("127.0.0.10", ["127.0.0.*"], True),
    ("127.0.1.2", ["127.0.0.*"], False),
    ("127.0.0.4", ["127.0.0.?"], True),
    ("127.0.1.5", ["127.0.1.0/24"], True),
    ("127.0.0.8", ["&8"], True),
    ("127.0.0.10", ["&8"], True),             # 8 + 2
    ("127.0.0.4", ["&8", "&16"], False),
    ("127.0.0.64", ["&0x40"], True),
    ("127.255.255.254", ["&2"], False),       # Spamhaus' error answers are no listing
    ("127.255.255.254", ["127.0.0.*"], False),
    ("not an address", ["127.0.0.*"], False),
])
def test_expected_answers(answer, patterns, expected):
    assert dnsbl.answer_matches(answer, patterns) is expected


def test_expected_answer_patterns_are_checked():
    assert all(dnsbl.pattern_problem(p) is None for p in ("127.0.0.2", "127.0.0.*", "127.0.0.0/24", "&8", "&0xff"))
    assert all(dnsbl.pattern_problem(p) for p in ("127.0.0.x", "&256", "&", "*.example", "::1"))


def test_url_domains_of_a_body():
    html = (b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"<a href=3D\"https://www.spam.exa=\r\nmple/x\">here</a> and www.Other.Example.co.uk/y "
            b"http://user@198.51.100.7:8080/ https://a.b.spam.example/ http://localhost/ https://co.uk/\r\n")
    assert uridomains.list_items(html, 10000, 20) == ["spam.example", "example.co.uk", "198.51.100.7"]
    assert uridomains.list_items(html, 10000, 1) == ["spam.example"]
    b64 = (b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
           base64.encodebytes(b"visit http://hidden.example/now"))
    assert uridomains.list_items(b64, 10000, 20) == ["hidden.example"]
    assert uridomains.list_items(b"Subject: x\r\n\r\n" + b"x" * 5000 + b" http://late.example/", 1000, 20) == []


# -- at RCPT: the client IP and its domains ------------------------------------------------

def test_a_listed_client_is_scored_or_refused_and_asked_once(tmp_path):
    zone = {**listed("score.bl.example", "127.0.0.21", "127.0.0.22"),
            **listed("refuse.bl.example", "127.0.0.22", answer="127.0.0.4"),
            **listed("mask.bl.example", "127.0.0.21", answer="127.0.0.10"),
            **listed("othermask.bl.example", "127.0.0.21", answer="127.0.0.4")}
    lists = [block_list("score.bl.example", 2.0), block_list("mask.bl.example", 1.5, answers=["&8"]),
             block_list("othermask.bl.example", 9.0, answers=["&8"]),
             block_list("refuse.bl.example", reject="Blocked: {ip} is listed in {zone}", answers=["127.0.0.4"])]
    accounts = {BOB: "bob-password-1", "ann@example.com": "ann-password-1", "cy@example.com": "cy-password-1"}
    with list_server(tmp_path, zone, accounts=accounts, **{"dnsbl.client_lists": lists, "spam.mark_score": 3}) \
            as (srv, dns_server, root):
        port = srv.ports["smtp"]
        rcpts = (BOB, "ann@example.com", "cy@example.com")
        assert send(port, message("listed"), "127.0.0.21", rcpts=rcpts)[0] == 250
        asked = [n for n, _ in dns_server.queries if n.startswith("21.0.0.127.")]
        assert sorted(asked) == ["21.0.0.127.mask.bl.example", "21.0.0.127.othermask.bl.example",
                                 "21.0.0.127.refuse.bl.example", "21.0.0.127.score.bl.example"]   # once each
        assert send(port, message("unlisted"), "127.0.0.23")[0] == 250
        assert send(port, message("refused"), "127.0.0.22") == \
            (550, "5.7.1 Blocked: 127.0.0.22 is listed in refuse.bl.example")
        counters = srv.runtime.counters
    [m] = delivered(root, "Junk").values()
    assert " ".join(m["X-Spam-Status"].split()) == \
        "Yes, score=3.5 required=3.0 tests=DNSBL_mask.bl.example,DNSBL_score.bl.example"    # 2.0 + 1.5, once
    assert set(delivered(root)) == {"unlisted"}
    assert counters["dnsbl_rejected"] == 1 and counters["dnsbl_listed"] == 3


def test_an_ipv6_client_is_asked_by_its_nibbles(tmp_path):
    nibbles = ".".join(reversed("0" * 31 + "1"))
    zone = {f"{nibbles}.v6.bl.example": {"A": ["127.0.0.2"]}}
    settings = {"dnsbl.client_lists": [block_list("v6.bl.example", reject="listed")],
                "listeners.smtp.bind": ["127.0.0.1", "::1"]}
    with list_server(tmp_path, zone, **settings) as (srv, _, root):
        assert send(srv.ports["smtp"], message("v6"), "::1", host="::1") == (550, "5.7.1 listed")
        assert send(srv.ports["smtp"], message("v4"), "127.0.0.1")[0] == 250
    assert set(delivered(root)) == {"v4"}


def test_sender_and_helo_domains_against_a_domain_list(tmp_path):
    zone = {"spam.example.dbl.example": {"A": ["127.0.1.2"]}, "bad-helo.example.dbl.example": {"A": ["127.0.1.2"]},
            "other.example.dbl.example": {"A": ["127.255.255.254"]}}       # an error answer: not listed
    lists = [block_list("dbl.example", 6.0, answers=["127.0.1.*"]),
             block_list("dbl.example", reject="sender domain listed", answers=["127.0.1.*"], check=["sender"])]
    with list_server(tmp_path, zone, **{"dnsbl.domain_lists": lists[:1]}) as (srv, _, root):
        port = srv.ports["smtp"]
        assert send(port, message("by sender"), sender="x@spam.example")[0] == 250
        assert send(port, message("by helo"), helo="bad-helo.example")[0] == 250
        assert send(port, message("error answer"), sender="x@other.example", helo="[127.0.0.1]")[0] == 250
    junk = delivered(root, "Junk")
    assert set(junk) == {"by sender", "by helo"} and set(delivered(root)) == {"error answer"}
    assert "RHSBL dbl.example: spam.example (127.0.1.2)" in " ".join(junk["by sender"]["X-Spam-Report"].split())
    with list_server(tmp_path / "2", zone, **{"dnsbl.domain_lists": lists[1:]}) as (srv, _, root):
        assert send(srv.ports["smtp"], message("x"), sender="x@spam.example") == (550, "5.7.1 sender domain listed")
        assert send(srv.ports["smtp"], message("helo only"), helo="bad-helo.example")[0] == 250


# -- after DATA: the URLs of the body -------------------------------------------------------

def test_uri_lists_score_and_refuse_the_domains_of_urls(tmp_path):
    zone = {"spam.example.multi.uribl.example": {"A": ["127.0.0.8"]},
            "worse.example.multi.uribl.example": {"A": ["127.0.0.64"]},
            "7.100.51.198.multi.uribl.example": {"A": ["127.0.0.8"]}}
    lists = [block_list("multi.uribl.example", 5.0, answers=["&8"]),
             block_list("multi.uribl.example", reject="URL of {domain} listed", answers=["&64"])]
    qp = ("Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n", "<a href=3D\"http://www.sp=\r\n"
          "am.example/\">click</a>\r\n")
    with list_server(tmp_path, zone, **{"dnsbl.uri_lists": lists}) as (srv, _, root):
        port = srv.ports["smtp"]
        assert send(port, message("plain", "see https://www.spam.example/offer\r\n"))[0] == 250
        assert send(port, message("quoted", qp[1], extra=qp[0]))[0] == 250
        assert send(port, message("by address", "http://198.51.100.7/x\r\n"))[0] == 250
        assert send(port, message("clean", "see https://fine.example/\r\n"))[0] == 250
        assert send(port, message("refused", "http://a.worse.example/\r\n")) == (550, "5.7.1 URL of worse.example listed")
        assert srv.runtime.counters["uribl_listed"] == 3 and srv.runtime.counters["uribl_rejected"] == 1
        # a message of megabytes (kept in a file while it passes): its first max_body_kb are read
        big = "see http://www.spam.example/ now\r\n" + ("x" * 998 + "\r\n") * 3000 + "http://late.example/\r\n"
        assert send(port, message("large", big))[0] == 250
    assert set(delivered(root, "Junk")) == {"plain", "quoted", "by address", "large"}
    assert set(delivered(root)) == {"clean"}


# -- DNS that fails ----------------------------------------------------------------------------

def test_a_list_that_times_out_fails_or_answers_garbage_never_refuses(tmp_path):
    zone = {"1.0.0.127.slow.bl.example": "TIMEOUT", "1.0.0.127.broken.bl.example": "SERVFAIL",
            "1.0.0.127.junk.bl.example": "GARBAGE", "1.0.0.127.fine.bl.example": {"A": ["127.0.0.2"]},
            "spam.example.slow.uribl.example": "TIMEOUT"}
    lists = [block_list(z, 50.0, reject="should not be") for z in ("slow.bl.example", "broken.bl.example",
                                                                    "junk.bl.example")]
    settings = {"dnsbl.client_lists": lists + [block_list("fine.bl.example", 6.0)],
                "dnsbl.uri_lists": [block_list("slow.uribl.example", reject="no")], "spam.reject_score": 5.0}
    with list_server(tmp_path, zone, **settings) as (srv, _, root):
        port = srv.ports["smtp"]
        code, text = send(port, message("x", "http://spam.example/\r\n"))
        assert code == 550 and "refused as spam (score 6.0" in text      # only the list that answered counts
        srv.runtime.settings.dnsbl.client_lists = lists
        assert send(port, message("y", "http://spam.example/\r\n"))[0] == 250
        assert srv.runtime.counters["dnsbl_dns_errors"] == 8
    assert set(delivered(root)) == {"y"}


def test_check_message_shows_each_score_and_the_verdict(tmp_path):
    import json

    from conftest import run_cli
    from dnsserver import DNSServer
    from helpers_server import make_root
    dns_server = DNSServer({**listed("zen.bl.example", "198.51.100.7"), "spam.example.uri.example": {"A": ["127.0.0.2"]}})
    try:
        root = make_root(tmp_path, settings={
            "queue.nameservers": [dns_server.address], "server.hostname": "mx.example.com", "spam.reject_score": 8,
            "helo_checks.reverse_dns": "off", "helo_checks.sender_domain": "off",     # their points are not ours
            "dnsbl.client_lists": [block_list("zen.bl.example", 4.0)], "dnsbl.uri_lists": [block_list("uri.example", 2.5)]})
        saved = tmp_path / "m.eml"
        saved.write_bytes(message("offer", "http://www.spam.example/\n").replace(b"\r\n", b"\n"))
        r = run_cli(root, "check", "message", str(saved), "--ip", "198.51.100.7", "--from", "x@sender.example")
        assert r.code == 0, r.err
        lines = r.out.splitlines()
        lines = [x for x in lines if x.startswith("spam:")] + lines[-1:]     # the other checks' lines aside
        assert lines[-4:] == ["spam:   +4.0 DNSBL zen.bl.example: 198.51.100.7 (127.0.0.2)",
                              "spam:   +2.5 URIBL uri.example: spam.example (127.0.0.2)",
                              "spam: score 6.5 (mark 5.0, reject 8): junk", "250 accepted, filed into Junk"]
        r = run_cli(root, "check", "message", str(saved), "--ip", "198.51.100.8", "--json")
        out = json.loads(r.out)
        assert out["spam"]["total"] == 2.5 and out["spam"]["verdict"] == "inbox" and out["reply"] == "250 accepted"
        r = run_cli(root, "check", "message", str(saved), "--ip", "127.0.0.1", "--json")
        assert json.loads(r.out)["spam"]["why"] == "not scored: whitelisted client"
    finally:
        dns_server.close()


def test_bad_block_list_settings_are_reported_with_their_line(tmp_path):
    from engine import settings as settings_mod
    text = ('[dnsbl]\nclient_lists = [{ zone = "bl.example", answers = ["127.0.0.x"] }]\n'
            'uri_lists = [{ zone = "u.example", check = ["helo"] }]\n'
            'domain_lists = [{ zone = "d.example", score = "high" }]\n[spam]\nwhitelist_senders = ["nobody"]\n')
    import tomllib
    _, problems = settings_mod.validate(tomllib.loads(text), text, "mailctl.toml")
    assert problems == [
        "mailctl.toml:2: dnsbl.client_lists: bl.example: '127.0.0.x' is not an answer address, pattern "
        "(127.0.0.*), network or bit mask (&8)",
        "mailctl.toml:3: dnsbl.uri_lists: unknown field 'check' (known: zone, answers, score, reject)",
        "mailctl.toml:4: dnsbl.domain_lists: d.example: score must be a number from -100 to 100",
        "mailctl.toml:6: spam.whitelist_senders: 'nobody' is not a sender pattern (like *@example.com, news@*, "
        "*@*.example.org)"]


def test_reject_texts():
    from engine.accept.dnslists import reject_reply
    assert reject_reply("Listed: {ip} in {zone}", ip="192.0.2.1", zone="bl.example") == \
        "550 5.7.1 Listed: 192.0.2.1 in bl.example"
    assert reject_reply("5.7.0 Listed at {zone}", zone="bl.example") == "550 5.7.0 Listed at bl.example"
    assert reject_reply("4.7.1 never a 4xx {domain}", domain="x\r\nBcc: y") == \
        "550 5.7.1 4.7.1 never a 4xx x??Bcc: y"


def test_answers_are_kept_for_cache_s_and_asked_again_after():
    """With dnsbl.cache_s, a client that sends again is answered from this process's
    memory (no lookup, no hop to a lookup thread); past cache_s it is asked again."""
    import asyncio
    import time
    from types import SimpleNamespace

    from dnsserver import DNSServer
    from engine.mailauth import dnslookup
    dns = DNSServer(listed("keep.bl.example", "192.0.2.7"))
    try:
        cfg = SimpleNamespace(queue=SimpleNamespace(nameservers=[dns.address]),
                              mailauth=SimpleNamespace(dns_timeout_s=2, dns_cache_entries=0))
        resolver = dnslookup.resolver_for(cfg)
        queries = [dnsbl.ip_query("keep.bl.example", "192.0.2.7"), dnsbl.ip_query("keep.bl.example", "192.0.2.8")]
        first = dnsbl.lookup_all(resolver, queries, 2.0, cache_s=1)
        assert [a.addresses for a in first] == [("127.0.0.2",), ()] and len(dns.queries) == 2
        again = asyncio.run(dnsbl.lookup_all_async(resolver, queries, 2.0, cache_s=1))
        assert [a.addresses for a in again] == [("127.0.0.2",), ()] and len(dns.queries) == 2
        time.sleep(1.1)
        assert [a.addresses for a in dnsbl.lookup_all(resolver, queries, 2.0, cache_s=1)] == [("127.0.0.2",), ()]
        assert len(dns.queries) == 4
    finally:
        dns.close()
