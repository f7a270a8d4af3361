"""Property-based tests of the access lists' parsers (engine/access/): network entries
(CIDR), address patterns with wildcards and their matching (against fnmatch, in linear
time), IP-range tables, the state/access.toml reader, and the Received-field reader of
incoming relays, which must never fail and only ever name a real address it was given.
How to run a long version: see tests/test_fuzz_parsers.py."""
from __future__ import annotations

import fnmatch
import ipaddress

from hypothesis import example, given, strategies as st

from engine.access import origin, patterns, ranges
from engine.access.entries import AccessEntries
from engine.errors import InvalidInput
from helpers_fuzz import fuzz, in_cpu_time

ANY_TEXT = st.text(max_size=80)
ADDRESS_CHARS = st.sampled_from(list("ab.-@*?") + ["x", "Y", "1"])


@fuzz(500)
@given(ANY_TEXT)
@example("192.0.2.7/24")
@example("::ffff:192.0.2.1/120")
@example("[2001:db8::1]")
@example("fe80::1%eth0")
def test_a_network_entry_parses_to_a_network_or_is_refused(text):
    try:
        net = patterns.parse_network(text)
    except InvalidInput as e:
        assert str(e) and "\n" not in str(e)[:200]
        return
    assert isinstance(net, (ipaddress.IPv4Network, ipaddress.IPv6Network))
    canonical = patterns.network_text(text)
    assert patterns.parse_network(canonical) == net             # the stored form reads back the same


@fuzz(500)
@given(st.ip_addresses(), st.integers(0, 128))
def test_an_address_is_in_the_networks_built_around_it(addr, prefix):
    prefix = min(prefix, addr.max_prefixlen)
    net = patterns.parse_network(f"{addr}/{prefix}")
    # an IPv4-mapped address is an IPv4 client: in IPv4 networks (and ::ffff:a.b.c.d/96+,
    # made IPv4), never in a wider IPv6 network such as ::/0
    mapped_outside = addr.version == 6 and addr.ipv4_mapped is not None and prefix < 96
    assert patterns.in_networks(str(addr), [net]) is not mapped_outside
    if not mapped_outside:
        assert patterns.best_match(str(addr), [(net, "x")]) == (net.prefixlen, "x")


@st.composite
def text_and_pattern(draw):
    """A text and a pattern made from it (runs replaced by '*', characters by '?', some
    characters changed), so that most of them match or nearly do."""
    text = draw(st.text(ADDRESS_CHARS, max_size=30))
    pattern, i = [], 0
    while i < len(text):
        how = draw(st.sampled_from(["keep", "keep", "star", "one", "other"]))
        if how == "star":
            n = draw(st.integers(0, 4))
            pattern.append("*")
            i += n
            continue
        pattern.append({"keep": text[i], "one": "?", "other": draw(ADDRESS_CHARS)}[how])
        i += 1
    return "".join(pattern), text


@fuzz(500)
@given(st.one_of(st.tuples(st.text(ADDRESS_CHARS, max_size=20), st.text(ADDRESS_CHARS, max_size=30)),
                 text_and_pattern()))
@example(("*b", "ab"))
@example(("*", "*1"))                # a "*" in the text is not a wildcard
@example(("a*b*c", "aXbYbZc"))
def test_wildcards_match_as_fnmatch_does(case):
    pattern, text = case
    expected = fnmatch.fnmatchcase(text, pattern.replace("[", "[[]"))
    assert patterns.wildcard(pattern, text) == expected


def test_wildcards_take_linear_time_on_a_pathological_pattern():
    pattern, text = "*a" * 150 + "b", "a" * 5000
    assert in_cpu_time(2.0, patterns.wildcard, pattern, text) is False


@fuzz(500)
@given(ANY_TEXT, st.emails())
@example("*@*.example.com", "x@mx.example.com")
@example("example.com", "x@example.com")
def test_a_pattern_parses_canonically_or_is_refused(text, address):
    try:
        p = patterns.parse_pattern(text)
    except InvalidInput as e:
        assert str(e)
        return
    assert p == p.lower() and p.isprintable() and len(p) <= patterns.MAX_PATTERN + 1
    assert patterns.parse_pattern(p) == p                          # idempotent
    assert patterns.matches(p, address) in (True, False)
    if "*" not in p and "?" not in p and not p.startswith("@"):
        assert patterns.matches(p, p)                              # an address matches itself


@fuzz(300)
@given(st.dictionaries(ANY_TEXT, st.one_of(
    st.dictionaries(st.sampled_from([*ranges.DIRECTIONS, "networks", "priority", "spam_checks", "bogus"]),
                    st.one_of(st.booleans(), st.integers(-5, 2000), ANY_TEXT, st.lists(ANY_TEXT, max_size=3))),
    ANY_TEXT), max_size=3), st.ip_addresses())
def test_range_tables_are_accepted_or_named_as_a_problem(tables, addr):
    problem = ranges.ranges_problem(tables)
    if problem is None:
        parsed = ranges.parse_ranges(tables)
        assert all(0 <= r.priority <= 1000 and r.networks for r in parsed)
    else:
        assert isinstance(problem, str) and problem


@fuzz(200)
@given(st.binary(max_size=400))
@example(b'[[entry]]\nkind = "deny"\nvalue = "../../x"\n')
@example(b'[[entry]]\nkind = "deny"\nvalue = "10.0.0.0/8"\nlisteners = [1]\nexpires = "soon"\n')
@example(b'entry = 5\n')
def test_any_state_file_reads_as_entries_or_keeps_the_last_good(tmp_path_factory, data):
    from engine.root import Root
    root = Root(tmp_path_factory.mktemp("st") / "root")
    root.state_dir.mkdir(parents=True)
    (root.state_dir / "access.toml").write_bytes(data)
    for e in AccessEntries(root).active():
        assert e.kind in ("allow", "deny", "sender", "recipient")
        if e.kind in ("allow", "deny"):
            patterns.parse_network(e.value)
        else:
            patterns.parse_pattern(e.value)


RECEIVED_PARTS = st.sampled_from(["from", " ", "(", ")", "[", "]", "by", "IPv6:", "192.0.2.1", "::1", "\\",
                                  "2001:db8::5", "mx.example", "\r\n\t", ";", "999.1.1.1", "helo=", "10.0.0.1"])


@fuzz(1000)
@given(st.one_of(ANY_TEXT, st.lists(RECEIVED_PARTS, max_size=25).map("".join)))
@example("from a (b [192.0.2.1]) by c")
@example("from [10.0.0.9] (x [192.0.2.9]) by c")
def test_a_received_field_names_an_address_it_holds_or_none(value):
    ip = origin.client_of(value)
    if ip is not None:
        ipaddress.ip_address(ip)
        assert ip in value or str(ipaddress.ip_address(ip)) != value   # came from the text


@fuzz(300)
@given(st.lists(st.one_of(ANY_TEXT, st.lists(RECEIVED_PARTS, max_size=20).map("".join)), max_size=8),
       st.binary(max_size=200))
def test_the_original_client_of_any_header_is_an_address_or_none(fields, tail):
    header = b"".join(b"Received: " + f.encode("utf-8", "replace") + b"\r\n" for f in fields) + tail
    relays = [patterns.parse_network("127.0.61.0/24")]
    ip = in_cpu_time(2.0, origin.original_client, header, relays)
    if ip is not None:
        addr = ipaddress.ip_address(ip)
        assert not addr.is_loopback and not patterns.in_networks(ip, relays)


def test_a_huge_received_field_is_not_read():
    header = b"Received: from a (" + b"(" * 100_000 + b"[192.0.2.1]) by b\r\n\r\n"
    assert in_cpu_time(2.0, origin.original_client, header, []) is None


@fuzz(300)
@given(st.lists(st.tuples(st.sampled_from(["allow", "deny"]), st.ip_addresses(v=4), st.integers(0, 32)),
                max_size=12), st.ip_addresses(v=4))
def test_the_network_index_finds_what_a_scan_finds(tmp_path_factory, specs, addr):
    from types import SimpleNamespace

    from engine.access import gate
    from engine.access.entries import Entry
    from engine.root import Root
    entries = [Entry(kind, patterns.network_text(f"{ip}/{plen}")) for kind, ip, plen in specs]
    store = AccessEntries(Root(tmp_path_factory.mktemp("ix") / "root"))
    store.all = lambda: entries
    rt = SimpleNamespace(access=store, bans=SimpleNamespace(is_manually_banned=lambda ip: False))
    holding = [(patterns.network_of(e.value).prefixlen, e) for e in entries if addr in patterns.network_of(e.value)]
    narrowest = max((p for p, _ in holding), default=None)
    denied = any(p == narrowest and e.kind == "deny" for p, e in holding)
    assert (gate.refusal(rt, str(addr), "smtp") is not None) == denied
