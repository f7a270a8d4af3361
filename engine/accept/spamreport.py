"""`mailctl check message`'s part for the block lists and the spam score: what port 25
would find for a saved message from a client (the lists asked with the server's DNS
settings), each score with its reason, the total and the verdict."""
from __future__ import annotations

import logging

from .. import dnsbl
from ..mailauth import dnslookup
from . import clientgate, dnslists, spamscore
from .arrival import SMTP, Arrival, Envelope
from .rcpt import to_postmaster
from .verdicts import ENDS, Score

INBOX, JUNK, REJECT = "inbox", "junk", "reject"
LISTED = "refused by a block list"           # 'why' of a block list's reject text
_quiet = logging.getLogger("mailctl.check")


def check_message(settings, data: bytes, *, ip: str, helo: str, sender: str, scores=(), resolved=(),
                  directory=None) -> dict:
    """{'scores': [{'points', 'reason'}], 'total', 'verdict' (inbox, junk or reject),
    'reply', 'why'}: the block lists and the spam score for this message from ip. scores
    are the other checks' points (verdicts.Score), counted in; resolved the recipients
    (policy.Accepted: their domains' thresholds, postmaster never refused by a list)."""
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    env = Envelope(source=SMTP, sender=sender, recipients=[r.address for r in resolved], client_ip=ip, helo=helo,
                   resolved=list(resolved))
    arrival = Arrival(env, data, None, settings, directory, log=_quiet)
    why = spamscore.whitelisted(settings.spam, ip, sender)
    if not why and not clientgate.spam_checks_run(settings, ip):
        why = "spam checks off for its IP range"
    if why:
        return _report([], INBOX, "250 accepted", f"not scored: {why}")
    found: list = list(scores)
    cfg = settings.dnsbl
    queries = dnslists.envelope_queries(cfg, ip, sender, helo)
    answers = dnsbl.lookup_all(dnslookup.resolver_for(settings), [q for _, _, q in queries],
                               float(cfg.dns_timeout_s))
    refuse = not any(to_postmaster(r) for r in resolved)
    for verdicts in (dnslists.judge(queries, answers, ip, _quiet, arrival.count, refuse), dnslists.uri_lists(arrival)):
        for v in verdicts if isinstance(verdicts, tuple) else (verdicts,):
            if isinstance(v, ENDS):
                return _report(found, REJECT, v.reply, LISTED)
            if isinstance(v, Score):
                found.append(v)
    errors = arrival.counted.count("dnsbl_dns_errors")
    note = f"{errors} block list lookup(s) failed (not scored)" if errors else ""
    if not settings.spam.enabled:
        return _report(found, INBOX, "250 accepted", "spam.enabled is off")
    arrival.scores = found
    total = round(sum(s.points for s in found), 1)
    reject, marking = spamscore.decide(arrival, total)
    if reject is not None:
        return _report(found, REJECT, reject.reply, note)
    if marking:
        folders = sorted({v.folder for v in spamscore.junk_filing(arrival, marking)})
        return _report(found, JUNK, f"250 accepted, filed into {', '.join(folders)}", note)
    return _report(found, INBOX, "250 accepted", note)


def thresholds(settings, directory, accepted) -> dict:
    """A recipient's spam thresholds (its domain file over [spam]): scoring, mark, reject."""
    arrival = Arrival(Envelope(source=SMTP, sender="", recipients=[]), b"", None, settings, directory, log=_quiet)
    on, mark, reject = spamscore.thresholds_for(arrival, accepted)
    return {"scoring": on and settings.spam.enabled, "mark": mark, "reject": reject}


def lines(report: dict, settings) -> list[str]:
    """The report as text lines: each score, then the total and the verdict."""
    out = [f"spam: {s['points']:+6.1f} {s['reason']}" for s in report["scores"]]
    cfg = settings.spam
    limits = f"mark {cfg.mark_score}, reject {cfg.reject_score or 'never'}"
    out.append(f"spam: score {report['total']:.1f} ({limits}): {report['verdict']}"
               + (f" ({report['why']})" if report["why"] else ""))
    return out


def _report(scores, verdict: str, reply: str, why: str) -> dict:
    return {"scores": [{"points": s.points, "reason": s.reason} for s in scores],
            "total": round(sum(s.points for s in scores), 1), "verdict": verdict, "reply": reply, "why": why}
