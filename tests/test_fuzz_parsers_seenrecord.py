"""Property-based tests of a user's private \\Seen record (engine/maildir/seenrecord.py),
a file anyone with a shell on the tree may damage: any bytes parse to a seen set or to
None (read as "nothing seen"), never raise; ranges are never expanded; what a set writes
reads back as the same set. How to run a long version: see tests/test_fuzz_parsers.py."""
from __future__ import annotations

from hypothesis import example, given, strategies as st

from engine.maildir import SeenSet, parse_seen_record
from helpers_fuzz import fuzz

UIDS = st.integers(min_value=1, max_value=2**32 - 1)
RANGES = st.lists(st.tuples(UIDS, UIDS).map(lambda t: (min(t), max(t))), max_size=20)


@fuzz(500)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=2**32))
@example(b"mailctl-seen 1 7\n1:4294967295\n", 7)
@example(b"mailctl-seen 1 7\n5:1,0,x\n", 7)
@example(b"mailctl-seen 1 7\n1:4294967296\n", 7)
@example(b"\xff\xfe", 7)
def test_any_bytes_parse_or_are_refused(data, uidvalidity):
    seen = parse_seen_record(data, uidvalidity)
    assert seen is None or isinstance(seen, SeenSet)


@fuzz(500)
@given(RANGES, st.lists(UIDS, max_size=20), UIDS)
def test_a_set_reads_back_the_same(ranges, probes, uidvalidity):
    seen = SeenSet(ranges)
    again = parse_seen_record(f"mailctl-seen 1 {uidvalidity}\n{seen.text()}\n".encode(), uidvalidity)
    assert again is not None and again.text() == seen.text()
    for uid in probes + [a for a, _ in ranges] + [b for _, b in ranges]:
        assert (uid in again) == any(a <= uid <= b for a, b in ranges)
    assert parse_seen_record(f"mailctl-seen 1 {uidvalidity}\n{seen.text()}\n".encode(), uidvalidity + 1) is None
