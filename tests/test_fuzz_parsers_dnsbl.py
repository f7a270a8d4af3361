"""Property-based tests of the block lists' and the spam score's parsers: URL domains of
any message bytes (engine/uridomains.py), expected-answer patterns and answer matching
(engine/dnsbl.py), the [dnsbl]/[spam] setting checks (engine/spam_settings.py),
and the X-Spam-* fields we write from network-given reasons. How to run a long version:
see tests/test_fuzz_parsers.py."""
from __future__ import annotations

import ipaddress

from hypothesis import example, given, strategies as st

from engine import dnsbl, uridomains
from engine import spam_settings
from engine.accept import Score, spamscore
from helpers_fuzz import fuzz, in_cpu_time

URLISH = st.lists(st.sampled_from([b"http://", b"https://", b"www.", b"ftp://", b"user@", b"[", b"]", b"=\r\n",
                                   b"=3D", b"%2e", b".", b"-", b"spam", b"example", b"co.uk", b"198.51.100.7",
                                   b"::1", b" ", b"\"", b"<a href=", b"\r\n", b"\r\n\r\n", b"\xff", b"/"]),
                  max_size=40).map(b"".join)
MESSAGE_HEADS = st.sampled_from([b"", b"Subject: x\r\n\r\n", b"Content-Type: text/html\r\n"
                                 b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
                                 b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                                 b"Content-Transfer-Encoding: base64\r\n\r\n"])
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-")


@fuzz(400)
@given(MESSAGE_HEADS, st.one_of(URLISH, st.binary(max_size=300)), st.integers(1, 5))
@example(b"", b"http://www.spam.example/ https://a.b.c.example.co.uk", 5)
def test_url_domains_are_bounded_dns_names_or_addresses(head, body, most):
    items = in_cpu_time(2.0, uridomains.list_items, head + body, 4096, most)
    assert len(items) <= most and len(set(items)) == len(items)
    for item in items:
        try:
            ipaddress.ip_address(item)
            continue
        except ValueError:
            pass
        assert set(item) <= _NAME_CHARS and "." in item and len(item) <= 253
        assert dnsbl.domain_query("uri.example", item) is not None


@fuzz(200)
@given(st.integers(1, 5000))
def test_a_huge_body_costs_what_its_bound_allows(repeat):
    body = b"Subject: x\r\n\r\n" + b"http://a%d.spam.example/ " * 1 * repeat
    assert len(in_cpu_time(2.0, uridomains.list_items, body, 2048, 20)) <= 20


PLAIN_FIELDS = st.lists(st.sampled_from([b"Subject: x\r\n", b"Content-Type: text/plain\r\n", b"Content-Type: TEXT/html; x\r\n",
                                         b"Content-Type: text\r\n", b"Content-Type: multipart/mixed\r\n",
                                         b"Content-Transfer-Encoding: 8bit\r\n", b"Content-Transfer-Encoding: base64\r\n",
                                         b"Content-type:\r\n text/plain\r\n", b"From x\r\n", b" folded\r\n",
                                         b"X: a\nb\r\n", b"X: a\rb\r\n", b"Content-Transfer-Encoding: Quoted-Printable\r\n"]),
                        max_size=5).map(b"".join)


@fuzz(400)
@given(PLAIN_FIELDS, st.one_of(URLISH, st.binary(max_size=200)))
@example(b"Content-Type: text/plain\r\n", b"http://a.example/\r\n")
def test_the_parser_free_path_gives_what_the_email_package_gives(head, body):
    raw = head + b"\r\n" + body
    plain = uridomains.plain_body(raw)
    if plain is not None:
        assert plain == uridomains.parsed_text(raw, 10 ** 6)


def test_the_parser_free_path_takes_plain_mail_and_leaves_mime_to_the_parser():
    assert uridomains.plain_body(b"Subject: x\r\n\r\nsee http://a.example/") == b"see http://a.example/"
    assert uridomains.plain_body(b"Content-Type: text/html; charset=utf-8\r\n\r\n<a>") == b"<a>"
    for head in (b"Content-Transfer-Encoding: base64", b"Content-Type: multipart/mixed; boundary=b",
                 b"Content-Type: message/rfc822", b"X: a\nb", b"From someone"):
        assert uridomains.plain_body(head + b"\r\n\r\nbody") is None, head


ANSWER_PATTERNS = st.one_of(st.text(alphabet="0123456789.*?&x/abcdef:", max_size=20),
                            st.sampled_from(["127.0.0.*", "&8", "&0x40", "127.0.0.0/24", "127.0.0.2", "*"]))


@fuzz(500)
@given(st.lists(ANSWER_PATTERNS, max_size=4), st.ip_addresses(v=4).map(str) | st.text(max_size=20))
@example(["&8"], "127.255.255.254")
def test_answer_matching_never_fails_and_agrees_with_the_pattern_check(patterns, answer):
    matched = dnsbl.answer_matches(answer, patterns)
    if matched:
        ipaddress.IPv4Address(answer)             # only addresses are ever "listed"
        assert any(dnsbl.pattern_problem(p) is None for p in patterns)
    if answer.startswith("127.255."):
        assert not dnsbl.answer_matches(answer, [p for p in patterns if p.startswith("&")])


@fuzz(300)
@given(st.ip_addresses())
def test_reversed_addresses_name_the_address(ip):
    name = dnsbl.reversed_ip(str(ip))
    parts = name.split(".")
    if ip.version == 4 or ip.ipv4_mapped:
        v4 = ip if ip.version == 4 else ip.ipv4_mapped
        assert ".".join(reversed(parts)) == str(v4)
    else:
        assert len(parts) == 32 and int("".join(reversed(parts)), 16) == int(ip)


SETTING_VALUES = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() |
                              st.text(max_size=20), lambda inner: st.lists(inner, max_size=3) |
                              st.dictionaries(st.sampled_from(["zone", "answers", "score", "reject", "check", "x"]),
                                              inner, max_size=5), max_leaves=10)


@fuzz(400)
@given(st.lists(SETTING_VALUES, max_size=3), st.sampled_from(["client", "domain", "uri"]))
@example([{"zone": "bl.example", "answers": ["&8"], "score": 3.0, "reject": "no\r\nBcc: x"}], "client")
def test_block_list_settings_are_checked_never_crash(value, kind):
    problem = spam_settings.block_lists(kind)(value)
    if problem is None:                           # what passes is what the stages rely on
        for entry in value:
            assert isinstance(entry["zone"], str) and dnsbl.domain_query(entry["zone"], "x.example")
            assert all(dnsbl.pattern_problem(p) is None for p in entry.get("answers", ["127.0.0.*"]))
            assert "\n" not in entry.get("reject", "") and "\r" not in entry.get("reject", "")


@fuzz(300)
@given(st.lists(st.text(max_size=30), max_size=4), st.text(max_size=40))
def test_sender_patterns(patterns, sender):
    if spam_settings.sender_patterns(patterns) is None:
        spam_settings.sender_listed(sender, patterns)


@fuzz(300)
@given(st.lists(st.tuples(st.floats(-100, 100), st.text(max_size=120)), max_size=5), st.floats(0.1, 100))
@example([(5.0, "DNSBL x: 1.2.3.4\r\nBcc: evil@example")], 5.0)
def test_our_spam_fields_are_single_ascii_fields_whatever_the_reasons(scores, required):
    fields = spamscore.headers([Score(p, r) for p, r in scores], sum(p for p, _ in scores), required, True)
    for f in fields:
        assert f.isascii()
        rest = f.split(b"\r\n")[1:]
        assert all(line[:1] == b"\t" for line in rest)     # line ends only as folds
        assert b"\n" not in f.replace(b"\r\n\t", b"") and b"\r" not in f.replace(b"\r\n\t", b"")
