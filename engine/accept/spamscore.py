"""The spam score (after DATA, port 25): the points every check gave (verdicts.Score: DNS
block lists, HELO checks ...; arrival.scores) weighed against two thresholds, as
hMailServer's (feature-inventory §7.1):

  - at or over spam.mark_score: X-Spam-Flag / X-Spam-Score / X-Spam-Status / X-Spam-Report
    headers naming the checks (SpamAssassin's form), spam.subject_prefix before the
    Subject, and the copy goes into the recipient's spam.junk_folder;
  - at or over spam.reject_score (0 = never): 550 5.7.1 at the end of DATA, never a silent
    drop of mail we said 250 to.

A domain's file may say spam_scoring = false, spam_mark_score = N, spam_reject_score = N
for its recipients. The message is refused only when every recipient's threshold says so
(after DATA it is one answer for all); otherwise each recipient that would refuse or mark
gets it in Junk.

Never scored: authenticated submission, trusted networks, mail injected on this machine,
spam.whitelist_networks and whitelist_senders, a client whose IP range has spam_checks = false. X-Spam-* fields a sender wrote are removed
from port 25 mail (a forged "X-Spam-Status: No" must not fool a mail client's filter).
"""
from __future__ import annotations

import re

from ..greylist import ip_listed
from ..mailauth import authresults
from ..smtp import replies
from . import clientgate
from .arrival import SMTP, Arrival
from ..spam_settings import junk_folder, sender_listed
from .verdicts import CONTINUE, AddHeaders, FileInto, Reject

OUR_FIELDS = (b"x-spam-flag", b"x-spam-score", b"x-spam-status", b"x-spam-report", b"x-spam-level",
              b"x-spam-scanned")
_TOKEN = re.compile(r"[^A-Za-z0-9_.-]+")


def whitelisted(cfg, ip: str, sender: str) -> str:
    """Why spam.whitelist_* lets this client or sender by ('' when it does not)."""
    if ip_listed(ip, cfg.whitelist_networks):
        return "whitelisted client"
    if sender_listed(sender, cfg.whitelist_senders):
        return "whitelisted sender"
    return ""


def spam_score(arrival: Arrival):
    """AddHeaders + FileInto at the mark, Reject at the reject score, else CONTINUE."""
    env, cfg = arrival.envelope, arrival.settings.spam
    if env.source != SMTP or env.vouched or not cfg.enabled:
        return CONTINUE
    _remove_forged(arrival)
    why = whitelisted(cfg, env.client_ip, env.sender)
    if why:
        if arrival.scores:
            arrival.log.info("spam: %s: %s: not scored: %s", env.client_ip, env.txid, why)
        arrival.count("spam_whitelisted")
        return CONTINUE
    if not clientgate.spam_checks_run(arrival.settings, env.client_ip):     # its IP range says so
        arrival.count("spam_range_off")
        return CONTINUE
    total = round(sum(s.points for s in arrival.scores), 1)
    verdict, marking = decide(arrival, total)
    if verdict is None and not marking:
        if arrival.scores:
            arrival.log.info("spam: %s: %s: score=%.1f: inbox (%s)", env.client_ip, env.txid, total, reasons(arrival))
        # the verdict is shown for ham too, as SpamAssassin and spamc do: mail filters and
        # Sieve's spamtest (RFC 5235) read X-Spam-Score
        return AddHeaders(headers(arrival.scores, total, min(thresholds_for(arrival, r)[1] for r in _recipients(arrival)),
                                  False))
    if verdict is not None:
        arrival.count("spam_rejected")
        arrival.log.info("spam: %s: %s: score=%.1f: rejected (%s)", env.client_ip, env.txid, total, reasons(arrival))
        return verdict
    arrival.count("spam_marked")
    arrival.log.info("spam: %s: %s: score=%.1f: junk for %s (%s)", env.client_ip, env.txid, total,
                     ",".join(marking) or "all", reasons(arrival))
    added = headers(arrival.scores, total, min(thresholds_for(arrival, r)[1] for r in _recipients(arrival)), True)
    if cfg.subject_prefix and not _prefix_subject(arrival, cfg.subject_prefix.encode("utf-8")):
        added += (b"Subject: " + cfg.subject_prefix.strip().encode("utf-8"),)
    return (AddHeaders(added), *junk_filing(arrival, marking))


def junk_filing(arrival: Arrival, boxes: tuple[str, ...]) -> tuple[FileInto, ...]:
    """Where the marked copies go: each mailbox's Junk folder (its domain's junk_folder,
    else spam.junk_folder). boxes () or ('',) means every mailbox of the message."""
    settings, default = arrival.settings, arrival.settings.spam.junk_folder
    everyone = boxes in ((), ("",))
    named = [m.address for a in arrival.envelope.resolved for m in a.mailboxes] if everyone else boxes
    own: dict[str, list[str]] = {}          # a domain's own folder -> its mailboxes
    for box in named:
        folder = junk_folder(settings, arrival.directory, box)
        if folder != default:
            own.setdefault(folder, []).append(box)
    moved = {box for group in own.values() for box in group}
    rest = boxes if everyone else tuple(b for b in boxes if b not in moved)
    filing = [FileInto(default, rest)] if everyone or rest else []
    return (*filing, *(FileInto(folder, tuple(group)) for folder, group in own.items()))


def decide(arrival: Arrival, total: float):
    """(Reject or None, the mailboxes to mark: ('',) = all of them, () = none)."""
    recipients = _recipients(arrival)
    limits = [thresholds_for(arrival, r) for r in recipients]
    forced = any(s.spam for s in arrival.scores)         # a scanner's own verdict (spam_scan.mode = "own")
    if all(on and reject and total >= reject for on, _, reject in limits):
        worst = max(reject for _, _, reject in limits)
        return Reject(replies.spam_refused(total, worst), "spam"), ()
    marking = [r for r, (on, mark, reject) in zip(recipients, limits)
               if on and (forced or total >= mark or (reject and total >= reject))]
    if not marking:
        return None, ()
    opted_out = any(not m.spam_filter for r in marking if r is not None for m in r.mailboxes)
    if len(marking) == len(recipients) and not opted_out:
        return None, ("",)           # all of them (FileInto with no mailboxes)
    boxes = [m.address for r in marking if r is not None for m in r.mailboxes if m.spam_filter]
    return None, tuple(boxes)


def headers(scores, total: float, required: float, spam: bool) -> tuple[bytes, ...]:
    """Our X-Spam-* fields (SpamAssassin's form): tests= the checks' names, the report
    each check's points and reason."""
    tests = ",".join(sorted({t for s in scores for t in (s.tests or (_token(s.reason),))})) or "none"
    status = f"X-Spam-Status: {'Yes' if spam else 'No'}, score={total:.1f} required={required:.1f}"
    lines = [f"X-Spam-Flag: {'YES' if spam else 'NO'}", f"X-Spam-Score: {total:.1f}",
             _fold(status, f"tests={tests}")]
    if scores:
        lines.append("X-Spam-Report:" + "".join(f"\r\n\t* {s.points:5.1f} {_shown(s.reason)}" for s in scores[:30]))
    return tuple(line.encode("ascii", "replace") for line in lines)


def reasons(arrival: Arrival) -> str:
    return "; ".join(f"{s.points:+.1f} {_shown(s.reason)}" for s in arrival.scores[:30]) or "no checks scored"


def _recipients(arrival: Arrival) -> list:
    """The envelope's RCPT results (policy.Accepted), or [None] for 'the server's own
    thresholds' (injected or hand-made envelopes without them)."""
    return list(arrival.envelope.resolved) or [None]


def thresholds_for(arrival: Arrival, accepted) -> tuple[bool, float, float]:
    """(scoring on, mark, reject) for a recipient: its domain's file over [spam]."""
    cfg = arrival.settings.spam
    on, mark, reject = True, float(cfg.mark_score), float(cfg.reject_score)
    if accepted is not None and arrival.directory is not None and accepted.resolution.local_domain:
        d = arrival.directory.domain(accepted.address.rpartition("@")[2])
        if d is not None:
            on = d.spam_scoring
            mark = mark if d.spam_mark_score is None else float(d.spam_mark_score)
            reject = reject if d.spam_reject_score is None else float(d.spam_reject_score)
        if accepted.mailboxes and not any(m.spam_filter for m in accepted.mailboxes):
            on = False               # every mailbox it reaches opted out (spam_filter = false)
    return on, mark, reject


def _token(reason: str) -> str:
    """A check's name for tests=: its reason up to the colon ('DNSBL zen.example: 127.0.0.2'
    -> 'DNSBL_zen.example')."""
    return _TOKEN.sub("_", reason.partition(":")[0].strip())[:60].strip("_") or "CHECK"


def _fold(first: str, rest: str) -> str:
    return first + (f"\r\n\t{rest}" if len(first) + len(rest) > 76 else f" {rest}")


def _shown(text: str, limit: int = 200) -> str:
    """Network-given text in a header or log line: printable ASCII, bounded."""
    return "".join(c if " " <= c <= "~" else "?" for c in str(text)[:limit])


def _remove_forged(arrival: Arrival) -> None:
    block = arrival.header_block()
    if b"x-spam-" not in block.lower():
        return
    fields = authresults.fields(block)
    ours = {bytes(line) for line in arrival.added}       # what a stage before this one wrote (spamscan.py)
    kept = [f for f in fields if f.split(b":", 1)[0].strip().lower() not in OUR_FIELDS or f.rstrip(b"\r\n") in ours]
    if len(kept) != len(fields):
        arrival.replace_header_block(b"".join(kept))
        arrival.log.info("spam: %s: %s: removed %d X-Spam field(s) the sender wrote", arrival.envelope.client_ip,
                         arrival.envelope.txid, len(fields) - len(kept))


def _prefix_subject(arrival: Arrival, prefix: bytes) -> bool:
    """Put prefix before the Subject; False when there is no Subject field."""
    fields = authresults.fields(arrival.header_block())
    for i, f in enumerate(fields):
        name, colon, value = f.partition(b":")
        if colon and name.strip().lower() == b"subject":
            if not value.strip().startswith(prefix.strip()):    # not when marked by a server before
                fields[i] = name + b": " + prefix + value.lstrip(b" \t")
                arrival.replace_header_block(b"".join(fields))
            return True
    return False
