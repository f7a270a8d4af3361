"""Property-based tests of what outbound limits read (see test_fuzz_parsers.py for the rules
every parser keeps): a state file under state/sendlimits/ of any content (torn, hand-edited,
another program's) reads as counts or as none, never raises; and a record over it still
counts and still refuses at the limit."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, strategies as st

from engine.sendcounts import SendCounts, file_name
from engine.sendlimits_settings import Limits
from helpers_fuzz import fuzz, in_cpu_time

ALICE = "alice@example.com"
NOW = 1_800_000_000.0

scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                   st.text(max_size=8))
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                     max_leaves=12)
minute = st.one_of(st.integers(int(NOW // 60) - 1500, int(NOW // 60) + 5), st.floats(), scalar)
count = st.one_of(st.integers(-5, 2**70), st.floats(), scalar)
document = st.fixed_dictionaries({}, optional={
    "account": st.sampled_from([ALICE, "bob@example.com", 5]),
    "messages": st.one_of(value, st.lists(st.one_of(st.tuples(minute, count).map(list), value), max_size=5)),
    "recipients": st.one_of(value, st.dictionaries(st.text(max_size=4), minute, max_size=5)),
    "blocked": st.one_of(value, st.floats(NOW - 10 * 86400, NOW + 86400)), "blocked_why": value})


class _Root:
    def __init__(self, path: Path):
        self.state_dir = path


@fuzz(300)
@given(st.one_of(st.binary(max_size=200), document.map(lambda d: json.dumps(d).encode())))
def test_any_state_file_reads_as_counts_and_a_record_still_counts(content):
    with tempfile.TemporaryDirectory() as d:
        store = SendCounts(_Root(Path(d)), clock=lambda: NOW)
        store.dir.mkdir()
        (store.dir / file_name(ALICE)).write_bytes(content)
        usage = in_cpu_time(1.0, store.usage, ALICE)
        counts = usage.public()
        assert all(isinstance(counts[k], int) and counts[k] >= 0 for k in
                   ("messages_last_hour", "messages_last_day", "recipients_last_hour", "recipients_last_day"))
        limits = Limits(messages_per_hour=counts["messages_last_hour"] + 1)
        result = in_cpu_time(1.0, store.record, ALICE, limits, ["x@far.example"])
        if usage.blocked:
            assert isinstance(result, str)
        else:
            assert result is None
            assert store.record(ALICE, limits, ["x@far.example"]).text() == \
                f"sending limit of {limits.messages_per_hour} messages per hour"
