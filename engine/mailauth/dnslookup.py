"""The DNS resolver of the authentication checks, and TXT lookups told apart as records,
nothing, or a temporary failure.

It uses the servers of queue.nameservers (as the MX lookups do; tests point both at a DNS
server on loopback) with a per-lookup time limit, blocking: the checks run in the
pipeline's worker thread, never on the event loop.
"""
from __future__ import annotations

import math
import threading
import time

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from .dnscache import AnswerCache


class TempDNSError(Exception):
    """The answer could not be had now (timeout, SERVFAIL, garbage): a temperror."""


_cache: dict[tuple, dns.resolver.Resolver] = {}
_cache_lock = threading.Lock()


def resolver_for(settings) -> dns.resolver.Resolver:
    """One resolver per (servers, timeout, cache size), kept: reading resolv.conf per
    message is waste, and its cache of answers (dnscache.py) is what makes the checks cheap."""
    servers = tuple(str(s) for s in settings.queue.nameservers)
    timeout = float(settings.mailauth.dns_timeout_s)
    entries = int(settings.mailauth.dns_cache_entries)
    key = (servers, timeout, entries)
    with _cache_lock:
        r = _cache.get(key)
        if r is None:
            r = _cache[key] = _make(servers, timeout, entries)
        return r


def _make(servers: tuple[str, ...], timeout: float, entries: int) -> dns.resolver.Resolver:
    if servers:
        r = dns.resolver.Resolver(configure=False)
        found = []
        for item in servers:
            host, port = item, 53
            if item.count(":") == 1:
                host, p = item.split(":")
                port = int(p)
            found.append(dns.nameserver.Do53Nameserver(host, port))
        r.nameservers = found
    else:
        try:
            r = dns.resolver.Resolver()
        except dns.exception.DNSException:       # no resolv.conf: every lookup is a temperror
            r = dns.resolver.Resolver(configure=False)
            r.nameservers = []
    r.lifetime = timeout
    r.timeout = timeout
    if entries > 0:
        r.cache = AnswerCache(entries)
    return r


class NotKept(Exception):
    """A CacheOnly lookup whose answer is not kept in memory."""


class CacheOnly:
    """A resolver that answers only from the records query() keeps (dnscache.py) and
    raises NotKept for anything else: a check whose answers are all kept runs on the event
    loop then, without the round trip to a worker thread (engine/accept/helochecks.py)."""

    def __init__(self, resolver):
        self.cache = resolver.cache
        self.lifetime = resolver.lifetime

    def resolve(self, *args, **kwargs):
        raise NotKept()


class Budget:
    """A resolver whose lookups together take at most total_s: one message's checks (SPF's
    ten lookups, a key per signature, DMARC's two) against DNS that never answers would
    otherwise hold a pipeline worker thread for minutes, and enough such messages would
    stall every delivery. Past the budget each lookup is a timeout at once."""

    def __init__(self, resolver, total_s: float):
        self.resolver = resolver
        self.cache = resolver.cache
        self.lifetime = resolver.lifetime
        self.deadline = time.monotonic() + total_s

    def resolve(self, name, rdtype, *, lifetime: float | None = None, **kwargs):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise dns.exception.Timeout(timeout=0.0)
        allowed = min(self.lifetime, left, lifetime or self.lifetime)
        return self.resolver.resolve(name, rdtype, lifetime=allowed, **kwargs)


def query(resolver, name: str, rdtype: str, lifetime: float | None = None):
    """The rdata of name's records of that type ([] for NXDOMAIN or no such record).
    Raises TempDNSError for anything that may change on a retry; a name that cannot be
    a DNS name (too long, empty label) has no records."""
    kept = getattr(resolver, "cache", None)
    kept = kept if isinstance(kept, AnswerCache) else None
    if kept is not None:
        found = kept.records(name, rdtype)
        if found is not None:
            _note(resolver, found[0])
            return found[1]
    try:
        answer = resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False,
                                  lifetime=min(lifetime or resolver.lifetime, resolver.lifetime))
    except dns.resolver.NXDOMAIN as e:
        _note(resolver, _keep_nxdomain(kept, name, rdtype, e) if kept is not None else 0.0)
        return []
    except (dns.resolver.NoAnswer, dns.resolver.YXDOMAIN):
        _note(resolver, 0.0)
        return []
    except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel, UnicodeError):
        return []
    except dns.exception.DNSException as e:
        _note(resolver, 0.0)
        raise TempDNSError(_why(e)) from None
    except (OSError, ValueError) as e:            # a server that cannot be reached
        _note(resolver, 0.0)
        raise TempDNSError(type(e).__name__) from None
    records = list(answer.rrset) if answer.rrset is not None else []
    _note(resolver, kept.keep_records(name, rdtype, answer.expiration, records) if kept is not None else 0.0)
    return records


def _keep_nxdomain(kept: AnswerCache, name: str, rdtype: str, e: dns.resolver.NXDOMAIN) -> float:
    """An NXDOMAIN kept for as long as its SOA says (RFC 2308), as dnspython keeps it."""
    try:
        ttl = min(r.resolve_chaining().minimum_ttl for r in e.responses().values())
    except Exception:  # noqa: BLE001 - no usable SOA: not kept here (dnspython decides)
        return 0.0
    return kept.keep_records(name, rdtype, time.time() + ttl, [])


class Tracked:
    """A resolver noting until when every answer it gave stays kept (`until`; 0 once one
    could not be kept or failed): what is made from those answers alone holds as long."""

    def __init__(self, resolver):
        self.resolver = resolver
        self.cache = resolver.cache
        self.lifetime = resolver.lifetime
        self.until = math.inf

    def resolve(self, *args, **kwargs):
        return self.resolver.resolve(*args, **kwargs)

    def note(self, until: float) -> None:
        self.until = min(self.until, until)


def remembered(resolver, key: tuple, compute):
    """compute(resolver), or what it gave for key before while every DNS answer it read is
    still kept: a busy server checks the same senders and clients again and again. compute
    must depend on nothing but key and DNS (or call not_to_be_kept)."""
    cache = getattr(resolver, "cache", None)
    if not isinstance(cache, AnswerCache):
        return compute(resolver)
    found = cache.result(key)
    if found is not None:
        return found
    tracked = Tracked(resolver)
    value = compute(tracked)
    if tracked.until != math.inf:
        cache.keep_result(key, value, tracked.until)
    return value


def not_to_be_kept(resolver) -> None:
    """What the remembered computation reading through resolver makes now is not kept."""
    _note(resolver, 0.0)


def _note(resolver, until: float) -> None:
    note = getattr(resolver, "note", None)
    if note is not None:
        note(until)


def txt(resolver, name: str) -> list[bytes]:
    """name's TXT records, each one string (its pieces joined, RFC 7208 §3.3)."""
    return [b"".join(r.strings) for r in query(resolver, name, "TXT")]


def _why(e: Exception) -> str:
    if isinstance(e, dns.exception.Timeout):
        return "DNS timeout"
    if isinstance(e, dns.resolver.NoNameservers):
        return "DNS server failure"
    return f"DNS error ({type(e).__name__})"
