"""Property-based tests of the HELO name parser (engine/heloname.py) and of the DNS answers the
reverse-DNS and sender-domain checks read (engine/mailauth/fcrdns.py, served by a real DNS
server on loopback). How to run a long version: see tests/test_fuzz_parsers.py."""
from __future__ import annotations

import ipaddress

import pytest
from hypothesis import example, given, strategies as st

from dnsserver import DNSServer
from engine import heloname
from engine.addresses import normalize_domain
from engine.errors import InvalidInput
from engine.mailauth import dnslookup, fcrdns
from helpers_fuzz import fuzz, in_cpu_time

PIECES = st.sampled_from(["a", "b1", "-", "_", ".", "..", "[", "]", "IPv6:", "ipv6:", ":", "::", "1", "255",
                          "256", "0", "01", "%", "xn--", "\x00", "\r\n", " ", "\u00e9", "\uff0e", "x" * 64])
HELO = st.one_of(st.text(max_size=80), st.lists(PIECES, max_size=30).map("".join))
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(str)
CLIENT = st.one_of(IPV4, IPV6, st.sampled_from(["", "not-an-ip", "::ffff:192.0.2.1"]))
PROBLEMS = {"", "empty HELO", "HELO with characters that are not printable ASCII", "malformed address literal in HELO",
            "HELO address literal is not the client's address", "HELO is a bare IP address (an address literal needs "
            "brackets)", "HELO name longer than 253 characters", "HELO name ends with a dot",
            "HELO is not a fully qualified domain name (one label)", "HELO name has an empty label",
            "HELO name has an underscore", "HELO name has a label longer than 63 characters",
            "HELO name has a label that does not start and end with a letter or digit",
            "HELO name ends in a numeric label (not a domain name)"}
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@fuzz(1000)
@given(HELO, CLIENT)
@example("a." * 1000 + "a", "192.0.2.1")
@example("[IPv6:" + ":" * 5000 + "]", "::1")
@example("[" + "1" * 5000 + "]", "192.0.2.1")
def test_any_helo_gets_a_safe_answer_in_linear_time(helo, client):
    problem = in_cpu_time(0.5, heloname.syntax_problem, helo, client)
    assert problem in PROBLEMS, problem            # one of a few fixed texts: never the name itself
    forged = heloname.names_us(helo, client, ["mx.example.com"], ["192.0.2.1", "2001:db8::1"],
                               lambda d: d == "example.com")
    assert forged in ("", "HELO names our host name", "HELO names one of our domains", "HELO names our IP address")


@fuzz(500)
@given(st.lists(LABEL, min_size=1, max_size=6), st.sampled_from(["com", "example", "xn--p1ai", "a1"]))
def test_every_fully_qualified_name_passes_and_is_a_domain(labels, tld):
    name = ".".join([*labels, tld])
    if len(name) > heloname.MAX_NAME:
        return
    assert heloname.syntax_problem(name, "192.0.2.1") == ""
    assert normalize_domain(name) == name          # what passes here is a domain to the rest of mailctl


@fuzz(500)
@given(HELO)
def test_a_name_that_passes_is_a_domain_name(helo):
    if helo[:1] != "[" and heloname.syntax_problem(helo, "192.0.2.1") == "":
        try:
            normalize_domain(helo)
        except InvalidInput as e:
            pytest.fail(f"{helo!r} passes the HELO check but is no domain: {e}")


@fuzz(500)
@given(st.one_of(IPV4, IPV6))
def test_every_address_literal_of_the_client_passes(ip):
    literal = f"[{ip}]" if ":" not in ip else f"[IPv6:{ip}]"
    assert heloname.syntax_problem(literal, ip) == ""
    assert heloname.literal_address(literal) in (ipaddress.ip_address(ip), heloname.address(ip))
    assert heloname.names_us(literal, ip, [], [ip], lambda _: False) == ""       # the client itself
    other = "203.0.113.1" if ip != "203.0.113.1" else "203.0.113.2"
    assert heloname.names_us(literal, other, [], [ip], lambda _: False) == "HELO names our IP address"


# -- DNS answers ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dns_server():
    server = DNSServer({})
    yield server
    server.close()


TARGETS = st.one_of(st.sampled_from([".", "a.example", "A.EXAMPLE.", "x" * 63 + ".example", "loop.example",
                                     "1.0.0.127.in-addr.arpa", "\\000.example", "a\\.b.example"]),
                    st.lists(LABEL, min_size=1, max_size=4).map(".".join))
ENTRY = st.one_of(st.sampled_from(["TIMEOUT", "SERVFAIL", "NXDOMAIN", "GARBAGE"]),
                  st.fixed_dictionaries({}, optional={"A": st.lists(IPV4, max_size=3),
                                                      "AAAA": st.lists(IPV6, max_size=2),
                                                      "CNAME": st.sampled_from(["a.example", "loop.example"])}))


@fuzz(60)
@given(st.lists(TARGETS, max_size=12), st.lists(st.tuples(st.integers(0, 65535), TARGETS), max_size=4),
       ENTRY, ENTRY)
def test_any_answers_give_a_result(dns_server, ptrs, mxs, target_entry, loop_entry):
    dns_server.set("1.0.0.127.in-addr.arpa", {"PTR": ptrs} if ptrs else "NXDOMAIN")
    dns_server.set("s.example", {"MX": mxs} if mxs else {"A": []})
    for name in ("a.example", *(p for p in ptrs if "\\" not in p)):
        dns_server.set(name, target_entry)
    dns_server.set("loop.example", loop_entry)
    plain = dns_server.resolver()
    plain.lifetime = plain.timeout = 0.1
    resolver = dnslookup.Budget(plain, 0.4)         # as the server asks: a total time limit
    got = fcrdns.reverse_dns(resolver, "127.0.0.1")
    assert got.result in (fcrdns.PASS, fcrdns.NONE, fcrdns.MISMATCH, fcrdns.TEMPERROR)
    assert (got.result == fcrdns.TEMPERROR) == bool(got.why)
    assert fcrdns.sender_domain(resolver, "s.example").result in (
        fcrdns.RECEIVES, fcrdns.NO_RECORDS, fcrdns.NULL_MX, fcrdns.TEMPERROR)
