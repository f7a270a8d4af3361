"""DMARC (RFC 7489): the record of the From domain (or of its organisational domain, found
with the Public Suffix List of the publicsuffixlist package, no network at run time),
identifier alignment of SPF and DKIM, and the policy that applies (p, sp, pct).
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import dns.name

from . import dnslookup
from ..publicsuffix import SUFFIXES

POLICIES = ("none", "quarantine", "reject")
MAX_RECORD = 2048             # longer TXT values are not a DMARC record we act on


@dataclass(frozen=True)
class Record:
    p: str                    # none, quarantine, reject
    sp: str                   # for subdomains (p when absent)
    adkim: str = "r"          # r (relaxed: same organisational domain) or s (strict: equal)
    aspf: str = "r"
    pct: int = 100


class RecordError(ValueError):
    """A TXT record that starts as DMARC's but cannot be used (RFC 7489 §6.6.3: ignored)."""


def parse_record(text: str) -> Record:
    """A DMARC record ('v=DMARC1; p=reject; ...'). Raises RecordError; unknown tags are
    ignored (§6.3)."""
    if len(text) > MAX_RECORD:
        raise RecordError("record too long")
    parts = [p.strip() for p in text.split(";")]
    tags: dict[str, str] = {}
    for i, part in enumerate(parts):
        if not part:
            continue
        name, eq, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not eq or not name:
            raise RecordError(f"malformed tag {part[:40]!r}")
        if i == 0 and (name != "v" or value != "DMARC1"):
            raise RecordError("does not start with v=DMARC1")
        tags.setdefault(name, value)
    if "v" not in tags:
        raise RecordError("does not start with v=DMARC1")
    p = tags.get("p", "").lower()
    if p not in POLICIES:
        raise RecordError("no valid p= tag")
    sp = tags.get("sp", p).lower()
    sp = sp if sp in POLICIES else p
    adkim, aspf = tags.get("adkim", "r").lower(), tags.get("aspf", "r").lower()
    pct_text = tags.get("pct", "100")
    pct = int(pct_text) if pct_text.isdigit() and len(pct_text) <= 3 else 100
    return Record(p, sp, adkim if adkim in ("r", "s") else "r", aspf if aspf in ("r", "s") else "r",
                  min(pct, 100))


@functools.lru_cache(maxsize=4096)      # pure, and asked several times a message for the same names
def ascii_domain(domain: str) -> str:
    """The domain in its DNS form (A-labels, lower case): a From of bücher.example and a
    DKIM d= of xn--bcher-kva.example are the same domain."""
    domain = domain.strip().rstrip(".")
    try:
        return dns.name.from_unicode(domain).to_text(omit_final_dot=True).lower()
    except Exception:  # noqa: BLE001 - not a DNS name: compared as written
        return domain.lower()


@functools.lru_cache(maxsize=4096)
def org_domain(domain: str) -> str:
    """The organisational domain (§3.2): the public suffix plus one label."""
    domain = ascii_domain(domain)
    try:
        found = SUFFIXES.privatesuffix(domain)
    except Exception:  # noqa: BLE001 - a name the list cannot take stands for itself
        found = None
    return found or domain


def aligned(a: str, b: str, mode: str) -> bool:
    a, b = ascii_domain(a), ascii_domain(b)
    if not a or not b:
        return False
    return a == b if mode == "s" else org_domain(a) == org_domain(b)


@dataclass(frozen=True)
class Lookup:
    record: Record | None
    temperror: bool = False
    subdomain: bool = False   # the record came from the organisational domain
    problem: str = ""


def find_record(resolver, domain: str) -> Lookup:
    """The domain's record, else its organisational domain's (§6.6.3)."""
    domain = domain.lower().rstrip(".")
    return dnslookup.remembered(resolver, ("dmarc", domain), lambda tracked: _find_record(tracked, domain))


def _find_record(resolver, domain: str) -> Lookup:
    org = org_domain(domain)
    for name, sub in ((domain, False), (org, True)):
        if sub and org == domain:
            break
        try:
            texts = dnslookup.txt(resolver, "_dmarc." + name)
        except dnslookup.TempDNSError as e:
            return Lookup(None, temperror=True, problem=str(e))
        records = [t for t in texts if t[:8].lower() == b"v=dmarc1"]
        if len(records) == 1:
            try:
                return Lookup(parse_record(records[0].decode("utf-8", "replace")), subdomain=sub)
            except RecordError as e:
                return Lookup(None, problem=str(e))
        if len(records) > 1:
            return Lookup(None, problem="more than one DMARC record")     # §6.6.3: none
    return Lookup(None)


@dataclass(frozen=True)
class Evaluation:
    result: str               # pass, fail, none, temperror, permerror
    domain: str               # the From domain
    policy: str = "none"      # the record's policy for this domain (p or sp)
    disposition: str = "none"  # what applies after pct: none, quarantine, reject
    uncertain: bool = False   # failed while an SPF or DKIM temperror might have passed
    reason: str = ""


def evaluate(resolver, from_domain: str, spf_result: str, spf_domain: str, dkim_passes: list[str],
             dkim_temperror: bool = False, spf_temperror: bool = False, *, rng=random.random) -> Evaluation:
    """DMARC for one From domain: the SPF result and its domain, the d= of every DKIM pass."""
    found = find_record(resolver, from_domain)
    if found.temperror:
        return Evaluation("temperror", from_domain, reason=found.problem)
    if found.record is None:
        return Evaluation("permerror" if found.problem else "none", from_domain, reason=found.problem)
    rec = found.record
    policy = rec.sp if found.subdomain else rec.p
    spf_ok = spf_result == "pass" and aligned(spf_domain, from_domain, rec.aspf)
    dkim_ok = any(aligned(d, from_domain, rec.adkim) for d in dkim_passes)
    if spf_ok or dkim_ok:
        return Evaluation("pass", from_domain, policy, "none",
                          reason="SPF aligned" if spf_ok else "DKIM aligned")
    disposition = policy
    if rec.pct < 100 and rng() * 100 >= rec.pct:
        # §6.6.4: outside the sampled percentage the next weaker policy applies
        disposition = {"reject": "quarantine", "quarantine": "none"}.get(policy, "none")
    return Evaluation("fail", from_domain, policy, disposition, uncertain=dkim_temperror or spf_temperror,
                      reason="no aligned SPF or DKIM pass")
