"""The DNS answers the checks keep in each serving process, each for its TTL.

Every message from a sender asks the same names (its SPF record, DKIM key, _dmarc, MX,
the client's PTR and A, the block lists): without a cache that is about seven lookups per
message, most of the checks' cost. dnspython's LRUCache does the keeping (negative answers
for the SOA's minimum, RFC 2308); this subclass only caps how long an answer is kept, so
a hostile or mistaken TTL of years cannot pin a record for the life of the process.

Beside it the cache keeps each lookup's records by the name as asked (`records`,
`keep_records`), read by dnslookup.query before dnspython is called at all: a hit in
dnspython's own cache still costs tens of microseconds (a Name parsed, a resolution set
up), and a message asks about ten names, so the checks' cost per message was mostly that.
And it keeps what a check made from kept answers alone (`result`, `keep_result`: an SPF
result, a reverse DNS finding) until the first of those answers expires: the same
evaluation again would read the same answers and give the same result.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict

import dns.resolver

MAX_TTL_S = 3600        # as Postfix's and most resolvers' caps on what they keep


class AnswerCache(dns.resolver.LRUCache):
    """An LRU cache of at most `entries` answers, none kept longer than MAX_TTL_S."""

    def __init__(self, max_size: int):
        super().__init__(max_size)
        self.kept: OrderedDict[tuple[str, str], tuple[float, list]] = OrderedDict()
        self.made: OrderedDict[tuple, tuple[float, object]] = OrderedDict()     # dnslookup.remembered's
        self.kept_lock = threading.Lock()

    def put(self, key, value) -> None:
        value.expiration = min(value.expiration, time.time() + MAX_TTL_S)
        super().put(key, value)

    def records(self, name, rdtype: str) -> tuple[float, list] | None:
        """(expiration, records) kept for this lookup ([] for none), or None when not kept."""
        key = (str(name).lower().rstrip("."), rdtype)
        with self.kept_lock:
            found = _fresh(self.kept, key)
            return None if found is None else (found[0], list(found[1]))

    def keep_records(self, name, rdtype: str, expiration: float, records: list) -> float:
        """Keep the records until expiration (an hour at most); what was kept (0 for not)."""
        return self._keep(self.kept, (str(name).lower().rstrip("."), rdtype), list(records), expiration)

    def result(self, key: tuple):
        """What keep_result kept for key, while every answer it was made from is kept."""
        with self.kept_lock:
            found = _fresh(self.made, key)
            return None if found is None else found[1]

    def keep_result(self, key: tuple, value, until: float) -> None:
        self._keep(self.made, key, value, until)

    def _keep(self, table: OrderedDict, key: tuple, value, expiration: float) -> float:
        expiration = min(expiration, time.time() + MAX_TTL_S)
        if expiration <= time.time():
            return 0.0
        with self.kept_lock:
            table[key] = (expiration, value)
            table.move_to_end(key)
            while len(table) > self.max_size:
                table.popitem(last=False)
        return expiration


def _fresh(table: OrderedDict, key: tuple):
    """table[key] unless missing or expired (then removed); the caller holds the lock."""
    found = table.get(key)
    if found is None:
        return None
    if found[0] <= time.time():
        del table[key]
        return None
    table.move_to_end(key)
    return found
