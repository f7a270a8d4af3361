"""What the property-based parser tests (tests/test_fuzz_parsers*.py) share: seeded
Hypothesis settings whose example count an environment variable can raise for a long
run, a CPU-time check for parsers that claim linear time, and imaplib-style chunks
of an IMAP response for imapclient's strict parser."""
from __future__ import annotations

import os
import re
import time

from hypothesis import HealthCheck, settings

# MAILCTL_FUZZ_EXAMPLES=100000 gives every property that many examples (a long run).
LONG_RUN = int(os.environ.get("MAILCTL_FUZZ_EXAMPLES", "0") or 0)


def fuzz(examples: int) -> settings:
    """Seeded and reproducible (CI), no example database, no per-example deadline (a
    loaded machine is slow); MAILCTL_FUZZ_EXAMPLES replaces the example count."""
    return settings(max_examples=LONG_RUN or examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def in_cpu_time(limit: float, fn, *args, **kwargs):
    """fn(*args): its result, or its exception raised again, after checking it took at
    most `limit` seconds of this process's CPU (a wall clock would fail on a loaded
    machine; a backtracking parser takes minutes, not a second)."""
    start = time.process_time()
    try:
        return fn(*args, **kwargs)
    finally:
        spent = time.process_time() - start
        assert spent < limit, f"{getattr(fn, '__name__', fn)} took {spent:.2f}s of CPU on {len(args[0])} units"


_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n")


def imaplib_chunks(response: bytes) -> list:
    """A response with literals as imaplib hands it to imapclient: (line up to and
    including the literal announcement, literal) tuples, then the rest of the line."""
    out: list = []
    pos = 0
    while True:
        m = _LITERAL_AT_END.search(response, pos)
        if not m:
            break
        size = int(m.group(1))
        out.append((response[pos:m.start() + len(m.group(0)) - 2], response[m.end():m.end() + size]))
        pos = m.end() + size
    if response[pos:]:
        out.append(response[pos:])
    return out
