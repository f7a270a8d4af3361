"""The DNS answers the checks keep in each serving process, each for its TTL.

Every message from a sender asks the same names (its SPF record, DKIM key, _dmarc, MX,
the client's PTR and A, the block lists): without a cache that is about seven lookups per
message, most of the checks' cost. dnspython's LRUCache does the keeping (negative answers
for the SOA's minimum, RFC 2308); this subclass only caps how long an answer is kept, so
a hostile or mistaken TTL of years cannot pin a record for the life of the process.
"""
from __future__ import annotations

import time

import dns.resolver

MAX_TTL_S = 3600        # as Postfix's and most resolvers' caps on what they keep


class AnswerCache(dns.resolver.LRUCache):
    """An LRU cache of at most `entries` answers, none kept longer than MAX_TTL_S."""

    def put(self, key, value) -> None:
        value.expiration = min(value.expiration, time.time() + MAX_TTL_S)
        super().put(key, value)
