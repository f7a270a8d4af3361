"""SPF (RFC 7208) of the MAIL FROM domain, or of the HELO name for the null sender, with
pyspf: pass, fail, softfail, neutral, none, temperror or permerror.

pyspf asks DNS through its module's DNSLookup; ours answers from the resolver of the check
running in this thread (mailctl's, pointed where queue.nameservers says), so a check never
uses the system resolver behind the settings' back, and every DNS failure is a TempError.
"""
from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass

import spf

from . import dnslookup

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
TOTAL_TIME_S = 20.0          # RFC 7208 §4.6.4: at least 20 s for the whole evaluation
_local = threading.local()
_log = logging.getLogger("mailctl")


@dataclass(frozen=True)
class SPFResult:
    result: str                  # one of RESULTS
    identity: str                # 'mailfrom' or 'helo'
    domain: str                  # the domain checked
    reason: str = ""             # pyspf's explanation, for the log and the header's comment


def check_spf(resolver, ip: str, sender: str, helo: str, *, total_s: float = TOTAL_TIME_S) -> SPFResult:
    """The SPF result of the client ip for sender ('' = null sender: the HELO name)."""
    identity = "mailfrom" if sender else "helo"
    domain = sender.rpartition("@")[2] if sender else helo
    if not sender and not helo:
        return SPFResult("none", identity, "", "no identity to check")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return SPFResult("none", identity, domain, "no client address")
    # the same client and sender again: the result made from the same kept DNS answers
    return dnslookup.remembered(resolver, ("spf", ip, sender, helo),
                                lambda tracked: _evaluate(tracked, ip, sender, helo, total_s))


def _evaluate(resolver, ip: str, sender: str, helo: str, total_s: float) -> SPFResult:
    identity = "mailfrom" if sender else "helo"
    domain = sender.rpartition("@")[2] if sender else helo
    _local.resolver = resolver
    try:
        q = _Query(i=ip, s=sender, h=helo, querytime=total_s)
        result, _code, reason = q.check()
    except Exception as e:  # noqa: BLE001 - hostile records must never crash the stage
        _log.warning("spf: %s for %s: %s", type(e).__name__, domain, e)
        dnslookup.not_to_be_kept(resolver)
        return SPFResult("temperror", identity, domain, "error in the SPF evaluation")
    finally:
        _local.resolver = None
    result = {"unknown": "permerror", "error": "temperror"}.get(result, result)
    if result not in RESULTS:
        result = "permerror"
    return SPFResult(result, identity, domain, str(reason or ""))


class _Query(spf.query):
    def validated_ptrs(self):
        """The ptr mechanism's and %{p}'s names (RFC 7208 §5.5): pyspf's, except that a DNS
        error looking up one name's addresses skips that name, as §5.5 says, instead of
        making the whole check a temperror."""
        names = []
        for name in self.dns_ptr(self.i)[:spf.MAX_PTR if self.strict else spf.MAX_PTR * 4]:
            try:
                if self.cidrmatch(self.dns_a(name, self.A), self.cidrmax):
                    names.append(name)
            except spf.TempError:
                continue
        return names


def _lookup(name, qtype, strict=True, timeout=None):
    """pyspf's DNSLookup: ((name, type), value) pairs, as its dnspython driver gives them."""
    resolver = getattr(_local, "resolver", None)
    if resolver is None:
        yield from _original(name, qtype, strict, timeout)
        return
    lifetime = max(0.05, float(timeout)) if timeout else None      # what is left of pyspf's 20 s
    try:
        records = dnslookup.query(resolver, name, qtype, lifetime)
    except dnslookup.TempDNSError as e:
        raise spf.TempError(str(e)) from None
    if qtype in ("TXT", "SPF") and any(b"%{t" in b"".join(r.strings).lower() for r in records):
        dnslookup.not_to_be_kept(resolver)     # %{t}: the time is part of the result
    for r in records:
        if qtype in ("A", "AAAA"):
            yield (name, qtype), r.address
        elif qtype == "MX":
            yield (name, qtype), (r.preference, r.exchange.to_text(True))
        elif qtype == "PTR":
            yield (name, qtype), r.target.to_text(True)
        elif qtype in ("TXT", "SPF"):
            yield (name, qtype), tuple(r.strings)


_original = spf.DNSLookup
spf.DNSLookup = _lookup
