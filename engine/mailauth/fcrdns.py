"""Two DNS questions about who is sending, for the HELO and sender checks
(engine/accept/helochecks.py):

- forward-confirmed reverse DNS of the client's address: its PTR names, and the
  A/AAAA records of those names, one of which must be the address again;
- can the sender's domain receive mail at all (hMailServer's "MX check"): an MX
  record, else an A or AAAA record (RFC 5321 §5.1's implicit MX); a null MX
  (RFC 7505: one MX of preference 0 and target ".") says it receives none.

Blocking, over a resolver from dnslookup.py (a Budget in the server). A DNS failure is
TEMPERROR and never counts as "no record".
"""
from __future__ import annotations

import dataclasses

import dns.exception

from ..heloname import address
from .dnslookup import TempDNSError, query, remembered

PASS, NONE, MISMATCH, TEMPERROR = "pass", "none", "mismatch", "temperror"     # reverse DNS
RECEIVES, NO_RECORDS, NULL_MX = "receives", "no records", "null MX"          # sender domain
MAX_PTR_NAMES = 10        # as RFC 7208 §4.6.4 limits the PTR names an SPF check follows


@dataclasses.dataclass(frozen=True)
class ReverseDNS:
    result: str               # PASS, NONE, MISMATCH or TEMPERROR
    name: str = ""            # PASS: the confirmed name; MISMATCH: the first PTR name
    why: str = ""             # TEMPERROR: what failed


def reverse_dns(resolver, ip: str) -> ReverseDNS:
    """Forward-confirmed reverse DNS of ip (an IPv4-mapped IPv6 address counts as IPv4)."""
    return remembered(resolver, ("rdns", ip), lambda tracked: _reverse_dns(tracked, ip))


def _reverse_dns(resolver, ip: str) -> ReverseDNS:
    addr = address(ip)
    if addr is None:
        return ReverseDNS(NONE)
    try:
        names = [_host(r.target) for r in query(resolver, addr.reverse_pointer, "PTR")]
    except TempDNSError as e:
        return ReverseDNS(TEMPERROR, why=f"PTR: {e}")
    names = [n for n in dict.fromkeys(names) if n][:MAX_PTR_NAMES]
    if not names:
        return ReverseDNS(NONE)
    rdtype = "A" if addr.version == 4 else "AAAA"
    failed = ""
    for name in names:
        try:
            found = {address(r.address) for r in query(resolver, name, rdtype)}
        except TempDNSError as e:
            failed = failed or f"{rdtype} of the PTR name: {e}"
            continue
        if addr in found:
            return ReverseDNS(PASS, name)
    if failed:                # a name not answered might have been the matching one
        return ReverseDNS(TEMPERROR, why=failed)
    return ReverseDNS(MISMATCH, names[0])


@dataclasses.dataclass(frozen=True)
class SenderDomain:
    result: str               # RECEIVES, NO_RECORDS, NULL_MX or TEMPERROR
    why: str = ""


def sender_domain(resolver, domain: str) -> SenderDomain:
    """Can domain receive mail (replies, bounces)?"""
    return remembered(resolver, ("mx", domain.lower()), lambda tracked: _sender_domain(tracked, domain))


def _sender_domain(resolver, domain: str) -> SenderDomain:
    try:
        mx = query(resolver, domain, "MX")
        if mx:
            targets = [_host(r.exchange) for r in mx]
            if len(mx) == 1 and targets == [""]:
                return SenderDomain(NULL_MX)
            return SenderDomain(RECEIVES)
        for rdtype in ("A", "AAAA"):
            if query(resolver, domain, rdtype):
                return SenderDomain(RECEIVES)
    except TempDNSError as e:
        return SenderDomain(TEMPERROR, str(e))
    return SenderDomain(NO_RECORDS)


def _host(name) -> str:
    """A DNS name from an answer as text without the final dot ('' for the root);
    a name that does not make text is ''."""
    try:
        return name.to_text(omit_final_dot=True) if len(name.labels) > 1 else ""
    except (dns.exception.DNSException, UnicodeError):
        return ""
