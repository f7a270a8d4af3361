"""The checks' DNS answers are kept in each serving process for their TTL
(engine/mailauth/dnscache.py): a second message from the same sender asks nothing again,
negative answers are kept as long as their SOA says (RFC 2308), a TTL of 0 or
mailauth.dns_cache_entries = 0 asks every time, and no answer is kept past an hour."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from dnsserver import DNSServer
from engine.mailauth import dnscache, dnslookup
from helpers_mailauth import auth_results, auth_server, delivered, mail, send

ZONE = {"pass.example": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]}}


def asked(dns, name: str, rdtype: str = "TXT") -> int:
    return dns.queries.count((name, rdtype))


@pytest.mark.parametrize("entries, ttl, times", [(10000, 60, 1), (10000, 0, 2), (0, 60, 2)])
def test_a_second_message_from_the_same_sender_is_checked_from_the_cache(tmp_path, entries, ttl, times):
    with auth_server(tmp_path, ZONE, **{"mailauth.dns_cache_entries": entries, "server.processes": 1}) \
            as (srv, dns, root):
        dns.ttl = ttl
        for n in range(2):
            assert send(srv, "carol@pass.example", mail("carol@pass.example", f"cached {n}"))[0] == 250
        assert asked(dns, "pass.example") == times                # SPF's record
        assert asked(dns, "_dmarc.pass.example") == times         # DMARC's: NXDOMAIN, cached by its SOA
        results = [" ".join(auth_results(m)) for m in delivered(root) if m["Subject"].startswith("cached")]
        assert len(results) == 2 and all("spf=pass" in r for r in results), results


def _resolver(dns, entries: int = 100):
    cfg = SimpleNamespace(queue=SimpleNamespace(nameservers=[dns.address]),
                          mailauth=SimpleNamespace(dns_timeout_s=2, dns_cache_entries=entries))
    return dnslookup.resolver_for(cfg)


def test_a_negative_answer_is_kept_for_its_soa_minimum_then_asked_again():
    dns = DNSServer({}, ttl=1)
    try:
        r = _resolver(dns)
        assert dnslookup.txt(r, "later.example") == []
        dns.set("later.example", {"TXT": ["v=spf1 -all"]})
        assert dnslookup.txt(r, "later.example") == []            # still the kept NXDOMAIN
        assert asked(dns, "later.example") == 1
        time.sleep(1.2)
        assert dnslookup.txt(r, "later.example") == [b"v=spf1 -all"]
        assert asked(dns, "later.example") == 2
    finally:
        dns.close()


def test_a_ttl_of_years_is_kept_an_hour_at_most():
    dns = DNSServer({"long.example": {"TXT": ["x"]}}, ttl=2**31 - 1)
    try:
        r = _resolver(dns, entries=7)
        assert dnslookup.txt(r, "long.example") == [b"x"]
        [kept] = [node.value for node in r.cache.data.values()]
        assert kept.expiration <= time.time() + dnscache.MAX_TTL_S
        [(expiration, records)] = r.cache.kept.values()          # what query reads first
        assert expiration <= time.time() + dnscache.MAX_TTL_S and len(records) == 1
        assert dnslookup.txt(dnslookup.Budget(r, 5), "long.example") == [b"x"]   # the budget asks the cache too
        assert asked(dns, "long.example") == 1
        assert dnslookup.txt(r, "none.example") == []              # NXDOMAIN, an SOA minimum of years
        expiration, records = r.cache.kept[("none.example", "TXT")]
        assert records == [] and expiration <= time.time() + dnscache.MAX_TTL_S
    finally:
        dns.close()


def test_the_cache_holds_at_most_its_entries():
    dns = DNSServer({f"n{i}.example": {"TXT": [str(i)]} for i in range(20)}, ttl=300)
    try:
        r = _resolver(dns, entries=5)
        for i in range(20):
            assert dnslookup.txt(r, f"n{i}.example") == [str(i).encode()]
        assert len(r.cache.data) == 5 and len(r.cache.kept) == 5
        assert dnslookup.txt(r, "n19.example") == [b"19"] and asked(dns, "n19.example") == 1
        assert dnslookup.txt(r, "n0.example") == [b"0"] and asked(dns, "n0.example") == 2
    finally:
        dns.close()


def test_a_check_whose_answers_are_kept_runs_without_asking_and_one_that_is_not_says_so():
    """What lets the RCPT-time checks skip the worker thread (engine/accept/helochecks.py)."""
    from engine.mailauth import fcrdns
    dns = DNSServer({"1.0.0.127.in-addr.arpa": {"PTR": ["mx.kept.example"]}, "mx.kept.example": {"A": ["127.0.0.1"]},
                     "kept.example": {"MX": [(10, "mx.kept.example")]}}, ttl=300)
    try:
        r = _resolver(dns)
        with pytest.raises(dnslookup.NotKept):
            fcrdns.reverse_dns(dnslookup.CacheOnly(r), "127.0.0.1")
        assert dns.queries == []                                  # nothing asked by the cache-only try
        assert fcrdns.reverse_dns(r, "127.0.0.1").result == fcrdns.PASS
        asked_before = len(dns.queries)
        assert fcrdns.reverse_dns(dnslookup.CacheOnly(r), "127.0.0.1") == fcrdns.ReverseDNS(fcrdns.PASS, "mx.kept.example")
        assert len(dns.queries) == asked_before
        with pytest.raises(dnslookup.NotKept):
            fcrdns.sender_domain(dnslookup.CacheOnly(r), "kept.example")
        assert fcrdns.sender_domain(r, "kept.example").result == fcrdns.RECEIVES
        assert fcrdns.sender_domain(dnslookup.CacheOnly(r), "kept.example").result == fcrdns.RECEIVES
    finally:
        dns.close()


def _spf(r, sender: str = "a@spf.example"):
    from engine.mailauth import spfcheck
    return spfcheck.check_spf(dnslookup.Budget(r, 5), "127.0.0.1", sender, "mx.spf.example").result


def test_an_spf_result_is_kept_as_long_as_the_answers_it_was_made_from_and_no_longer():
    dns = DNSServer({"spf.example": {"TXT": ["v=spf1 include:inc.spf.example -all"]},
                     "inc.spf.example": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]}}, ttl=1)
    try:
        r = _resolver(dns)
        assert _spf(r) == "pass"
        [(key, (until, result))] = [(k, v) for k, v in r.cache.made.items() if k[0] == "spf"]
        assert key == ("spf", "127.0.0.1", "a@spf.example", "mx.spf.example") and result.result == "pass"
        assert until <= time.time() + 1                         # the answers' TTL, not an hour
        dns.set("inc.spf.example", {"TXT": ["v=spf1 -all"]})
        assert _spf(r) == "pass"                                  # the same kept answers, the same result
        time.sleep(1.2)
        assert _spf(r) == "fail"                                  # expired with the include's record
    finally:
        dns.close()


def test_an_spf_result_from_a_failed_lookup_or_the_time_macro_is_not_kept():
    dns = DNSServer({"spf.example": {"TXT": ["v=spf1 include:inc.spf.example -all"]},
                     "inc.spf.example": "SERVFAIL",
                     "t.example": {"TXT": ["v=spf1 -all exp=why.t.example"]},
                     "why.t.example": {"TXT": ["refused at %{t}"]}}, ttl=300)
    try:
        r = _resolver(dns)
        assert _spf(r) == "temperror"
        dns.set("inc.spf.example", {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]})
        assert _spf(r) == "pass"                                  # the temperror was not kept
        assert _spf(r, "b@t.example") == "fail"
        assert not [k for k in r.cache.made if k[2] == "b@t.example"]     # %{t}: the time is in its reason
        assert [k for k in r.cache.made if k[2] == "a@spf.example"]
    finally:
        dns.close()


def test_a_dmarc_record_found_is_kept_as_long_as_its_answers():
    from engine.mailauth import dmarc
    dns = DNSServer({"_dmarc.org.example": {"TXT": ["v=DMARC1; p=reject"]}}, ttl=1)
    try:
        r = _resolver(dns)
        assert dmarc.find_record(r, "Mail.Org.Example").record.p == "reject"     # the organisational domain's
        asked_before = len(dns.queries)
        dns.set("_dmarc.org.example", {"TXT": ["v=DMARC1; p=none"]})
        assert dmarc.find_record(r, "mail.org.example").record.p == "reject"
        assert len(dns.queries) == asked_before
        time.sleep(1.2)
        assert dmarc.find_record(r, "mail.org.example").record.p == "none"
    finally:
        dns.close()
