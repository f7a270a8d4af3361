"""DNS block lists (DNSBL, RHSBL, SURBL/URIBL): the names to ask, the answers that mean
"listed", and the lookups of several zones at once. No SMTP here: the stages are
engine/accept/dnslists.py.

A list is asked for `<item>.<zone>` (type A): the client IP reversed (IPv4 by octets,
IPv6 by nibbles, RFC 5782 §2.1, §2.4), a domain as it is (RHSBL, URI lists). An answer
address means listed when it matches one of the list's expected answers:

    127.0.0.2       exactly that address
    127.0.0.*       a wildcard (* and ?), as hMailServer's "expected result"
    127.0.0.0/24    a network
    &8              127.0.0.x with x AND 8 not 0 (the bit masks of SURBL's and URIBL's multi lists)

A lookup that times out or fails is "unknown" (never listed): a list that cannot be
asked must not refuse mail.
"""
from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from .mailauth import dnslookup

_PATTERN = re.compile(r"[0-9.*?]+\Z")
_MASK = re.compile(r"&(0x[0-9A-Fa-f]{1,2}|[0-9]{1,3})\Z")
_LOOKUP_THREADS = 16
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


@dataclass(frozen=True)
class Query:
    """One question: item (an IP or a domain, for the log) asked of zone as name."""
    zone: str
    item: str
    name: str


@dataclass(frozen=True)
class Answer:
    query: Query
    addresses: tuple[str, ...] = ()   # the A records found ('' of them: not listed)
    error: str = ""                   # a temporary failure: not known

    def matching(self, patterns) -> tuple[str, ...]:
        return tuple(a for a in self.addresses if answer_matches(a, patterns))


# -- names -------------------------------------------------------------------------------

def reversed_ip(ip: str) -> str:
    """'192.0.2.1' -> '1.2.0.192'; an IPv6 address by its 32 nibbles, lowest first; an
    IPv4-mapped IPv6 address as the IPv4 one. Raises ValueError for anything else."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 6 and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    if addr.version == 4:
        return ".".join(reversed(str(addr).split(".")))
    return ".".join(reversed(addr.exploded.replace(":", "")))


def ip_query(zone: str, ip: str) -> Query | None:
    try:
        return Query(zone, ip, f"{reversed_ip(ip)}.{zone}")
    except ValueError:
        return None


def domain_query(zone: str, domain: str) -> Query | None:
    """A domain asked of a list (None for what is not a domain name of DNS length)."""
    domain = domain.strip().rstrip(".").lower()
    name = f"{domain}.{zone}"
    if not domain or len(name) > 253 or any(not 0 < len(label) < 64 for label in domain.split(".")):
        return None
    return Query(zone, domain, name)


# -- expected answers ---------------------------------------------------------------------

def pattern_problem(pattern) -> str | None:
    """Why an expected answer is none of the forms above (None when it is one)."""
    text = str(pattern)
    if _MASK.match(text):
        return None if int(text[1:], 0) <= 255 else f"{text!r}: a bit mask is at most 255"
    if "*" in text or "?" in text:
        return None if _PATTERN.match(text) else f"{text[:60]!r} is not an address pattern (like 127.0.0.*)"
    try:
        ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        return f"{text[:60]!r} is not an answer address, pattern (127.0.0.*), network or bit mask (&8)"
    return None


def answer_matches(address: str, patterns) -> bool:
    """Does an answer address mean "listed" for a list expecting these patterns?"""
    try:
        addr = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    text = str(addr)
    for p in patterns:
        p = str(p)
        if p.startswith("&"):
            if _MASK.match(p) and text.startswith("127.0.0.") and int(text.rpartition(".")[2]) & int(p[1:], 0):
                return True
        elif "*" in p or "?" in p:
            if fnmatch.fnmatchcase(text, p):
                return True
        else:
            try:
                if addr in ipaddress.IPv4Network(p, strict=False):
                    return True
            except ValueError:
                continue
    return False


# -- lookups ------------------------------------------------------------------------------

class Cache:
    """Answers kept for a while in this process (DNSBL answers change over minutes; a
    client sending many messages is asked once). Keyed by the DNS servers asked too."""

    def __init__(self, size: int = 20000):
        self.size = size
        self._items: dict[tuple, tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[str, ...] | None:
        with self._lock:
            found = self._items.get(key)
            if found is None or found[0] < time.monotonic():
                return None
            return found[1]

    def put(self, key: tuple, addresses: tuple[str, ...], seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            if len(self._items) >= self.size:
                now = time.monotonic()
                self._items = {k: v for k, v in self._items.items() if v[0] >= now}
                if len(self._items) >= self.size:
                    self._items.clear()
            self._items[key] = (time.monotonic() + seconds, addresses)


CACHE = Cache()


def _key(resolver, query: Query) -> tuple:
    return _servers(resolver), query.name


@functools.lru_cache(maxsize=64)
def _servers(resolver) -> tuple:
    """The servers a (long-lived) resolver asks, as text: read once, not per query."""
    return tuple(str(n) for n in getattr(resolver, "nameservers", ()))


def kept(resolver, query: Query, cache_s: float) -> Answer | None:
    """The answer this process keeps for query, or None (not kept, or caching off)."""
    found = CACHE.get(_key(resolver, query)) if cache_s > 0 else None
    return Answer(query, found) if found is not None else None


def lookup(resolver, query: Query, timeout: float, cache_s: float = 0) -> Answer:
    """The A records of query.name (blocking). A DNS failure is Answer.error."""
    found = kept(resolver, query, cache_s)
    if found is not None:
        return found
    try:
        found = dnslookup.query(resolver, query.name, "A", lifetime=timeout)
    except dnslookup.TempDNSError as e:
        return Answer(query, error=str(e))
    addresses = tuple(sorted({str(r.address) for r in found if hasattr(r, "address")}))[:16]
    CACHE.put(_key(resolver, query), addresses, cache_s)
    return Answer(query, addresses)


def lookup_all(resolver, queries, timeout: float, cache_s: float = 0) -> list[Answer]:
    """Every query at once (a message's lists cost one lookup time, not the sum); in the
    order given. Blocking: call it from a worker thread."""
    queries = list(queries)
    known = [kept(resolver, q, cache_s) for q in queries]
    if all(known):                    # the usual case for a client that sends again
        return known
    if len(queries) <= 1:
        return [lookup(resolver, q, timeout, cache_s) for q in queries]
    pool = _pool()
    futures = [pool.submit(lookup, resolver, q, timeout, cache_s) for q in queries]
    wait(futures, timeout=timeout + 1.0)
    return [f.result() if f.done() and f.exception() is None else Answer(q, error="DNS timeout")
            for f, q in zip(futures, queries)]


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(_LOOKUP_THREADS, thread_name_prefix="mailctl-dnsbl")
        return _executor


async def lookup_all_async(resolver, queries, timeout: float, cache_s: float = 0) -> list[Answer]:
    """lookup_all from the event loop (RCPT time): the lookups run in this module's
    threads, never in the disk pool's, so slow DNS cannot hold disk work up."""
    import asyncio
    queries = list(queries)
    known = [kept(resolver, q, cache_s) for q in queries]
    if all(known):                    # answered here: no hop to a thread and back
        return known
    loop = asyncio.get_running_loop()
    pool = _pool()
    tasks = [loop.run_in_executor(pool, lookup, resolver, q, timeout, cache_s) for q in queries]
    done = await asyncio.gather(*(asyncio.wait_for(t, timeout + 1.0) for t in tasks), return_exceptions=True)
    return [d if isinstance(d, Answer) else Answer(q, error="DNS timeout") for d, q in zip(done, queries)]
