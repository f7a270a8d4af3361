"""The DNS block list stages (port 25, [dnsbl] of mailctl.toml; lookups and matching in
engine/dnsbl.py):

  - `envelope_lists`, at RCPT: the client IP against dnsbl.client_lists (DNSBL) and the
    sender's and HELO domains against dnsbl.domain_lists (RHSBL). Asked once per
    transaction (the first RCPT; later ones reuse the verdict) and kept per process for
    dnsbl.cache_s, so a client sending many messages is asked once;
  - `relayed_client_lists`, after DATA, for mail from one of access.incoming_relays: at
    RCPT the client is our own relay (only the sender's domain is asked then); its
    original client (Envelope.client_ip, set by accesscheck.incoming_relay) is asked here;
  - `uri_lists`, after DATA: the registered domains of the body's URLs
    (engine/uridomains.py, bounded by max_urls and max_body_kb) against dnsbl.uri_lists.

A listing adds the list's score (verdicts.Score, weighed by spamscore.py), or refuses
with 550 5.7.1 and the list's reject text when it has one (at RCPT, or at the end of
DATA for URI lists). Every list is asked at once. A lookup that fails (timeout, SERVFAIL,
garbage) scores nothing and never refuses; it is logged and counted. A reject text never
refuses mail to postmaster (RFC 5321 §4.5.1): the list's score counts instead.

Never for authenticated submission, trusted networks, mail injected on this machine, or
what spam.whitelist_networks / whitelist_senders name, nor for a client whose IP range
turns the spam checks off.
"""
from __future__ import annotations

import re

from .. import dnsbl, uridomains
from ..mailauth import dnslookup
from . import clientgate
from .arrival import SMTP, Arrival
from ..spam_settings import DEFAULT_ANSWERS, DOMAIN_CHECKS
from .rcpt import to_postmaster
from .spamscore import whitelisted
from .verdicts import CONTINUE, Reject, Score


def _uncounted(_name: str) -> None:
    """count() of a verdict judged a second time (for postmaster): counted the first time."""

DNSBL, RHSBL, URIBL = "DNSBL", "RHSBL", "URIBL"
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3} ")
_HELO = re.compile(r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+\Z")


async def envelope_lists(check):
    """RCPT-time stage: CONTINUE, a Reject, or the Scores of the lists naming the client
    or its domains (once per transaction)."""
    rt, client = check.runtime, check.client
    settings = rt.settings
    cfg = settings.dnsbl
    if not (cfg.client_lists or cfg.domain_lists) or client.listener != "smtp" or client.user or client.trusted:
        return CONTINUE
    if not clientgate.spam_checks_run(settings, client.ip):
        return CONTINUE
    memo = check.transaction
    if "dnsbl" not in memo:
        memo["dnsbl"] = CONTINUE
        if whitelisted(settings.spam, client.ip, check.sender):
            return CONTINUE
        ip, helo = client.ip, check.helo
        if clientgate.from_incoming_relay(settings, client.ip):
            ip, helo = "", ""       # our backup MX's: its client is asked after DATA (relayed_client_lists)
        queries = envelope_queries(cfg, ip, check.sender, helo)
        answers = await dnsbl.lookup_all_async(dnslookup.resolver_for(settings), [q for _, _, q in queries],
                                               float(cfg.dns_timeout_s), float(cfg.cache_s))
        memo["dnsbl"] = judge(queries, answers, client.ip, rt.log, rt.count)
        memo["dnsbl_asked"] = (queries, answers)
    verdict = memo["dnsbl"]
    if isinstance(verdict, Reject) and to_postmaster(check.result):
        if "dnsbl_postmaster" not in memo:
            rt.log.info("dnsbl: %s: to postmaster: not refused (RFC 5321 4.5.1), scored", client.ip)
            memo["dnsbl_postmaster"] = judge(*memo["dnsbl_asked"], client.ip, rt.log, _uncounted, refuse=False)
        return memo["dnsbl_postmaster"]
    return verdict


def relayed_client_lists(arrival: Arrival):
    """After-DATA stage: the DNSBL verdict of the original client of mail an incoming
    relay handed in (its RCPT-time check skipped the relay's own address)."""
    env, settings = arrival.envelope, arrival.settings
    cfg = settings.dnsbl
    if not env.peer_ip or not cfg.client_lists or env.source != SMTP or env.vouched:
        return CONTINUE
    if not clientgate.spam_checks_run(settings, env.client_ip) or whitelisted(settings.spam, env.client_ip, env.sender):
        return CONTINUE
    return _asked(arrival, envelope_queries(cfg, env.client_ip, "", ""))


def _asked(arrival: Arrival, queries):
    """The after-DATA verdict of these lookups (no refusal when a recipient is postmaster)."""
    cfg = arrival.settings.dnsbl
    if not queries:
        return CONTINUE
    answers = dnsbl.lookup_all(dnslookup.resolver_for(arrival.settings), [q for _, _, q in queries],
                               float(cfg.dns_timeout_s), float(cfg.cache_s))
    refuse = not any(to_postmaster(r) for r in arrival.envelope.resolved)
    return judge(queries, answers, arrival.envelope.client_ip, arrival.log, arrival.count, refuse=refuse)


def uri_lists(arrival: Arrival):
    """After-DATA stage: CONTINUE, a Reject, or the Scores of the URI lists naming a domain
    of the body's URLs."""
    env, settings = arrival.envelope, arrival.settings
    cfg = settings.dnsbl
    if not cfg.uri_lists or env.source != SMTP or env.vouched or whitelisted(settings.spam, env.client_ip, env.sender):
        return CONTINUE
    if not clientgate.spam_checks_run(settings, env.client_ip):
        return CONTINUE
    items = uridomains.list_items(arrival.content, int(cfg.max_body_kb) * 1024, int(cfg.max_urls))
    return _asked(arrival, uri_queries(cfg, items))


# -- what is asked ----------------------------------------------------------------------

def envelope_queries(cfg, ip: str, sender: str, helo: str) -> list[tuple]:
    """(kind, list entry, dnsbl.Query) for the client's IP and its domains."""
    out = []
    for entry in cfg.client_lists:
        q = dnsbl.ip_query(entry["zone"], ip)
        if q is not None:
            out.append((DNSBL, entry, q))
    domains = {"sender": sender.rpartition("@")[2] if "@" in sender else "",
               "helo": helo if _HELO.match(helo or "") else ""}
    for entry in cfg.domain_lists:
        asked = []
        for which in entry.get("check", DOMAIN_CHECKS):
            d = domains.get(which, "").lower().rstrip(".")
            q = dnsbl.domain_query(entry["zone"], d) if d and d not in asked else None
            if q is not None:
                asked.append(d)
                out.append((RHSBL, entry, q))
    return out


def uri_queries(cfg, items) -> list[tuple]:
    out = []
    for entry in cfg.uri_lists:
        for item in items:
            q = dnsbl.ip_query(entry["zone"], item) if ":" in item or item.replace(".", "").isdigit() \
                else dnsbl.domain_query(entry["zone"], item)
            if q is not None:
                out.append((URIBL, entry, q))
    return out


# -- what the answers mean ---------------------------------------------------------------

def judge(queries, answers, ip: str, log, count, refuse: bool = True):
    """The verdict of the answers: the first Reject, else a tuple of Scores (CONTINUE for
    none). Each listing and each failed lookup is logged and counted. refuse=False (mail
    to postmaster): a list with a reject text gives its score instead."""
    scores = []
    for (kind, entry, query), answer in zip(queries, answers):
        zone = entry["zone"]
        if answer.error:
            count("dnsbl_dns_errors")
            log.info("dnsbl: %s: %s %s: %s not asked: %s (not scored)", ip, kind, zone, _shown(query.item),
                     answer.error)
            continue
        matched = answer.matching(entry.get("answers", DEFAULT_ANSWERS))
        if not matched:
            continue
        what = f"{_shown(query.item)} ({', '.join(matched)})"
        if entry.get("reject") and refuse:
            count(f"{kind.lower()}_rejected")
            log.info("dnsbl: %s: %s %s lists %s: rejected", ip, kind, zone, what)
            return Reject(reject_reply(entry["reject"], ip=ip, domain=query.item, zone=zone), kind.lower())
        count(f"{kind.lower()}_listed")
        log.info("dnsbl: %s: %s %s lists %s: score %+.1f", ip, kind, zone, what, float(entry.get("score", 0)))
        if entry.get("score", 0):
            scores.append(Score(float(entry["score"]), f"{kind} {zone}: {what}"))
    return tuple(scores) if scores else CONTINUE


def reject_reply(text: str, **values: str) -> str:
    """The refusal (550, 5.7.1 unless the text gives its own 5.x.x code), with {ip}, {domain} and {zone} filled in (printable, bounded)."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", _shown(value, 100))
    text = _shown(text, 300)
    return "550 " + (text if _ENHANCED.match(text) and text[0] == "5" else "5.7.1 " + text)


def _shown(text: str, limit: int = 100) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in str(text)[:limit])
