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
        self.kept_lock = threading.Lock()

    def put(self, key, value) -> None:
        value.expiration = min(value.expiration, time.time() + MAX_TTL_S)
        super().put(key, value)

    def records(self, name, rdtype: str) -> list | None:
        """The records kept for this lookup ([] for none), or None when not kept or expired."""
        key = (str(name).lower().rstrip("."), rdtype)
        with self.kept_lock:
            found = self.kept.get(key)
            if found is None:
                return None
            if found[0] <= time.time():
                del self.kept[key]
                return None
            self.kept.move_to_end(key)
            return list(found[1])

    def keep_records(self, name, rdtype: str, expiration: float, records: list) -> None:
        expiration = min(expiration, time.time() + MAX_TTL_S)
        if expiration <= time.time():
            return
        with self.kept_lock:
            key = (str(name).lower().rstrip("."), rdtype)
            self.kept[key] = (expiration, list(records))
            self.kept.move_to_end(key)
            while len(self.kept) > self.max_size:
                self.kept.popitem(last=False)
