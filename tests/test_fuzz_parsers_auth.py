"""Property-based tests of message authentication's parsers (engine/mailauth/): the
Authentication-Results header we write and the removal of forged ones, the DMARC record
parser and the organisational domain, DKIM/ARC verification of any header bytes, and SPF
evaluation of any record served by a real DNS server on loopback. How to run a long
version: see tests/test_fuzz_parsers.py."""
from __future__ import annotations

import dns.resolver
import pytest
from hypothesis import example, given, strategies as st

from dnsserver import DNSServer
from engine.mailauth import authresults, dkimcheck, dmarc, spfcheck
from helpers_fuzz import fuzz, in_cpu_time

ANY_TEXT = st.text(max_size=80)
NAMES = st.sampled_from(["Authentication-Results", "authentication-results", "Subject", "Received",
                         "AUTHENTICATION-RESULTS", "X-Other", "DKIM-Signature"])


# -- Authentication-Results -----------------------------------------------------------

@fuzz(300)
@given(ANY_TEXT, st.lists(st.tuples(st.sampled_from(["spf", "dkim", "dmarc", "arc"]), ANY_TEXT, ANY_TEXT,
                                    ANY_TEXT), max_size=4))
@example("mx.example", [("dkim", "pass", "x)\r\nBcc: evil@example", 'a";\r\n b')])
def test_our_header_is_one_field_whatever_the_network_gave(host, results):
    host = host if host.isascii() and host.isprintable() and host.strip() and ";" not in host else "mx.example"
    lines = [authresults.result(m, "pass", why, header_d=v) for m, why, v, _ in results]
    field = authresults.header(host, lines)
    assert field.isascii()
    # line ends only as folds: one field, nothing added after it
    assert all(part[:1] == b"\t" for part in field.split(b"\r\n")[1:])
    assert b"\n" not in field.replace(b"\r\n\t", b"") and b"\r" not in field.replace(b"\r\n\t", b"")
    block = b"Subject: x\r\n" + field + b"\r\nX-After: y\r\n"
    kept, removed = authresults.remove_claiming(block, host.strip('"'))
    if authresults.value(host) == host:
        assert removed == 1 and kept == b"Subject: x\r\nX-After: y\r\n"


@fuzz(300)
@given(st.lists(st.tuples(NAMES, st.binary(max_size=60), st.booleans()), max_size=8), ANY_TEXT)
def test_removal_keeps_every_other_field_and_is_idempotent(fields, ours):
    block = b"".join(name.encode() + b":" + value.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n" +
                     (b" folded\r\n" if fold else b"") for name, value, fold in fields)
    kept, removed = authresults.remove_claiming(block, ours)
    kept_fields = authresults.fields(kept)
    all_fields = authresults.fields(block)
    assert len(kept_fields) + removed == len(all_fields)
    assert all(f in all_fields for f in kept_fields)
    assert all(f.split(b":")[0].lower() == b"authentication-results" for f in all_fields if f not in kept_fields)
    assert authresults.remove_claiming(kept, ours) == (kept, 0)


# -- DMARC ------------------------------------------------------------------------------

TAGS = st.sampled_from(["p=reject", "p=quarantine", "p=none", "sp=reject", "sp=bogus", "pct=50", "pct=x",
                        "adkim=s", "aspf=r", "rua=mailto:a@b.example", "fo=1", "p=", "=", "x", " "])


@fuzz(400)
@given(st.lists(TAGS, max_size=6), st.sampled_from(["v=DMARC1", "v=dmarc1", "", "v=DMARC2"]))
def test_grammar_shaped_dmarc_records_parse_or_are_refused(tags, version):
    text = "; ".join([version, *tags]) if version else "; ".join(tags)
    try:
        rec = dmarc.parse_record(text)
    except dmarc.RecordError:
        return
    assert text.startswith("v=DMARC1") and rec.p in dmarc.POLICIES and rec.sp in dmarc.POLICIES
    assert 0 <= rec.pct <= 100 and rec.adkim in "rs" and rec.aspf in "rs"


@fuzz(400)
@given(st.text(max_size=3000))
@example("v=DMARC1; " + "p=reject;" * 2000)
def test_any_text_is_a_dmarc_record_or_record_error(text):
    try:
        in_cpu_time(1.0, dmarc.parse_record, text)
    except dmarc.RecordError:
        pass


@fuzz(300)
@given(st.text(max_size=300))
@example("." * 300)
@example("xn--\u00e9.com")
def test_any_domain_has_an_organisational_domain(text):
    assert isinstance(dmarc.org_domain(text), str)


# -- DKIM and ARC ----------------------------------------------------------------------

NO_DNS = dns.resolver.Resolver(configure=False)        # no server: every key lookup fails at once
NO_DNS.nameservers = []

SIG_HEADERS = st.sampled_from([b"DKIM-Signature", b"ARC-Seal", b"ARC-Message-Signature",
                               b"ARC-Authentication-Results", b"From"])


@fuzz(200)
@given(st.lists(st.tuples(SIG_HEADERS, st.binary(max_size=200)), max_size=6), st.binary(max_size=200))
@example([(b"DKIM-Signature", b"v=1; a=rsa-sha256; d=a.example; s=s; h=from; bh=AAAA; b=AAAA; l=99999999")], b"x")
@example([(b"ARC-Seal", b"i=1; a=rsa-sha256; cv=none; d=a; s=s; b=AAAA")], b"")
def test_any_signature_headers_give_a_result_never_an_exception(headers, body):
    message = b"".join(n + b": " + v.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n" for n, v in headers)
    message += b"\r\n" + body
    results = dkimcheck.check_dkim(NO_DNS, message, 0.1)
    assert all(r.result in ("pass", "fail", "neutral", "temperror", "permerror") for r in results)
    assert dkimcheck.check_arc(NO_DNS, message, 0.1).result in ("none", "pass", "fail")


# -- SPF ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dns_server():
    server = DNSServer({})
    yield server
    server.close()


MECHS = st.sampled_from(["a", "mx", "ptr", "ip4:127.0.0.1", "ip4:1.2.3.4/33", "ip6:::1", "exists:%{i}.x.example",
                         "include:r.example", "include:loop.example", "redirect=r.example", "exp=%{z}", "-all",
                         "~all", "?all", "+all", "a:%{l1r+-}.example", "%{", "a/24//64", "mx:", "v=spf1",
                         "include:" + "a" * 70 + ".example"])


@fuzz(150)
@given(st.lists(MECHS, max_size=8), st.text(max_size=20))
def test_any_spf_record_gives_a_result(dns_server, mechs, noise):
    record = " ".join(["v=spf1", *mechs, noise])
    dns_server.set("r.example", {"TXT": [record]})
    dns_server.set("loop.example", {"TXT": ["v=spf1 include:r.example -all"]})
    resolver = dns_server.resolver()
    resolver.lifetime = resolver.timeout = 0.5
    got = spfcheck.check_spf(resolver, "127.0.0.1", "l@r.example", "h.example", total_s=5)
    assert got.result in spfcheck.RESULTS
