"""Where mail for a domain goes: MX lookup (RFC 5321 §5.1) with dnspython.

- MX records in preference order, random among equal preferences;
- no MX record: the domain itself (its A/AAAA records) is the only host;
- a null MX (RFC 7505: one MX "." of preference 0): the domain accepts no mail -> permanent;
- NXDOMAIN: the domain does not exist -> permanent;
- SERVFAIL, timeouts, no answer from any server -> temporary (try again later).
"""
from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver


class DNSFailure(Exception):
    """A lookup failed; `permanent` says whether trying again could help."""

    def __init__(self, message: str, permanent: bool, status: str):
        super().__init__(message)
        self.permanent = permanent
        self.status = status          # enhanced status code for the DSN


@dataclass
class MXHost:
    name: str
    preference: int
    implicit: bool = False            # no MX record: the domain's own address


def make_resolver(settings) -> dns.asyncresolver.Resolver:
    """The system resolver, or the servers of queue.nameservers ('ip' or 'ip:port')."""
    q = settings.queue
    if q.nameservers:
        r = dns.asyncresolver.Resolver(configure=False)
        servers = []
        for item in q.nameservers:
            item = str(item)
            host, port = item, 53
            if item.count(":") == 1:
                host, p = item.split(":")
                port = int(p)
            servers.append(dns.nameserver.Do53Nameserver(host, port))
        r.nameservers = servers
    else:
        r = dns.asyncresolver.Resolver()
    r.lifetime = float(q.dns_timeout_s)
    r.timeout = min(float(q.dns_timeout_s), 5.0)
    return r


def _failure(e: Exception, what: str) -> DNSFailure:
    if isinstance(e, dns.resolver.NXDOMAIN):
        return DNSFailure(f"{what}: no such domain (NXDOMAIN)", True, "5.1.2")
    if isinstance(e, dns.exception.Timeout):
        return DNSFailure(f"{what}: DNS timeout", False, "4.4.3")
    if isinstance(e, dns.resolver.NoNameservers):
        return DNSFailure(f"{what}: DNS server failure (SERVFAIL)", False, "4.4.3")
    return DNSFailure(f"{what}: DNS lookup failed ({type(e).__name__})", False, "4.4.3")


async def lookup_mx(resolver, domain: str) -> list[MXHost]:
    """The hosts to try for domain, in order. Raises DNSFailure."""
    try:
        answer = await resolver.resolve(domain, "MX", search=False)
    except dns.resolver.NoAnswer:
        return [MXHost(domain, 0, implicit=True)]
    except Exception as e:  # noqa: BLE001 - every dnspython error maps to a DSN status
        raise _failure(e, f"MX lookup for {domain}") from None
    records = [(r.preference, r.exchange.to_text(omit_final_dot=True).lower()) for r in answer]
    if any(name in ("", ".") for _, name in records) or any(
            r.exchange.to_text() == "." for r in answer):
        raise DNSFailure(f"{domain} accepts no mail (null MX, RFC 7505)", True, "5.1.10")
    by_pref: dict[int, list[str]] = {}
    for pref, name in records:
        by_pref.setdefault(pref, []).append(name)
    hosts = []
    for pref in sorted(by_pref):
        names = by_pref[pref]
        random.shuffle(names)
        hosts += [MXHost(n, pref) for n in names]
    return hosts


async def lookup_addresses(resolver, host: str) -> list[str]:
    """IPv4 and IPv6 addresses of host (IPv4 first). Raises DNSFailure when none."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    out: list[str] = []
    errors: list[Exception] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, rdtype, search=False)
            out += [r.address for r in answer]
        except dns.resolver.NoAnswer:
            continue
        except Exception as e:  # noqa: BLE001 - any resolver failure is one more reason, judged below
            errors.append(e)
    if out:
        return out
    if errors and all(isinstance(e, dns.resolver.NXDOMAIN) for e in errors):
        raise DNSFailure(f"{host}: no such host (NXDOMAIN)", True, "5.1.2")
    if errors:
        raise _failure(errors[0], f"address lookup for {host}")
    raise DNSFailure(f"{host}: no A or AAAA record", True, "5.1.2")
