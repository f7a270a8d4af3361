"""The spam-scanner stage (after DATA, port 25, before spam_score): the message is asked of
rspamd (engine/scan/rspamd.py) and/or SpamAssassin's spamd (engine/scan/spamd.py), as
[spam_scan] in mailctl.toml says (engine/scan/spamscan_settings.py).

mode = "score" (the default): each scanner's score becomes a verdicts.Score naming its
rules, so it adds to the sender checks' points and spamscore.py weighs the total (Junk,
X-Spam-* headers listing the rules, 550 at spam.reject_score). mode = "own": the scanner's
own verdict decides (rspamd's action; spamd's Spam: True): 554 5.7.1 "Tagged As SPAM By ..."
(hMailServer's text), 451 4.7.1 for rspamd's greylist, else X-Spam-* headers and Junk
through spamscore (a Score with spam=True and no points).

A scanner that gives no verdict never loses mail and never makes a 5xx: by default the
message is accepted with `X-Spam-Scanned: no (...)` (on_failure = "defer": 451 4.7.1, and
the retry is scanned once the scanner is back). Not asked: messages over max_size_kb (the
same header says so), mail whose every recipient's domain says spam_scan = false or whose
every mailbox says spam_filter = false (those are still scanned for viruses).
"""
from __future__ import annotations

import time

from ..largemsg import LargeMessage
from ..scan import rspamd, spamd
from ..scan.verdict import ScanFailed, SpamVerdict
from ..smtp import replies
from .arrival import SMTP, Arrival
from .spamscore import junk_filing, whitelisted
from .verdicts import CONTINUE, AddHeaders, Defer, Reject, Score

HEADER = "X-Spam-Scanned"
SHOWN_RULES = 12                 # rules named in a Score's reason (all go into tests=)


def scan_spam(arrival: Arrival):
    """The stage: Scores (mode score), or the scanner's own verdict (mode own)."""
    settings, env = arrival.settings, arrival.envelope
    cfg = getattr(settings, "spam_scan", None)
    if cfg is None or not cfg.enabled or not (cfg.rspamd or cfg.spamd) or env.source != SMTP or env.vouched:
        return CONTINUE
    if not settings.spam.enabled:          # nothing would weigh their answer nor file into Junk
        return CONTINUE
    if whitelisted(settings.spam, env.client_ip, env.sender) or not any(_filtering(arrival)):
        return CONTINUE
    who = f"{env.client_ip}: {env.txid or '-'}"
    if len(arrival.content) > cfg.max_size_kb * 1024:
        arrival.count("spam_scan_skipped")
        arrival.log.info("spam-scan: %s: not scanned: %d bytes is over max_size_kb", who, len(arrival.content))
        return _not_scanned(f"larger than {cfg.max_size_kb} KB")
    content = arrival.content
    data = content.read_all() if isinstance(content, LargeMessage) else bytes(content)
    found, failed = scan(cfg, data, ip=env.client_ip, helo=env.helo, sender=env.sender,
                         rcpts=list(env.recipients), queue_id=env.txid)
    for engine, why in failed:
        arrival.count("spam_scan_failed")
        arrival.log.warning("spam-scan: %s: %s gave no verdict: %s", who, engine, why)
    for v, ms in found:
        arrival.count("spam_scan_done")
        arrival.log.info("spam-scan: %s: %s: %.1f/%.1f %s (%s) %.0f ms", who, v.engine, v.score, v.required,
                         v.action, ",".join(v.symbols[:SHOWN_RULES]) or "no rules", ms)
    if failed and cfg.on_failure == "defer":
        return Defer(replies.SPAM_SCANNER_UNAVAILABLE, "spam-scan-failed")
    verdicts: list = []
    for v, _ in found:
        verdict = judge(cfg, v, arrival)
        verdicts.extend(verdict if isinstance(verdict, tuple) else (verdict,))
        if isinstance(verdict, (Reject, Defer)):
            return verdict
    if failed:
        verdicts.append(_not_scanned(", ".join(f"{e} did not answer" for e, _ in failed)))
    return tuple(verdicts) or CONTINUE


def scan(cfg, data: bytes, **envelope) -> tuple[list[tuple[SpamVerdict, float]], list[tuple[str, str]]]:
    """Ask every configured scanner: ([(verdict, milliseconds)], [(scanner, why it failed)])."""
    timeout = float(cfg.timeout_s)
    asks = []
    if cfg.rspamd:
        asks.append(("rspamd", lambda: rspamd.check(cfg.rspamd, data, timeout, **envelope)))
    if cfg.spamd:
        asks.append(("spamd", lambda: spamd.check(cfg.spamd, data, timeout, cfg.spamd_user)))
    found, failed = [], []
    for engine, ask in asks:
        started = time.monotonic()
        try:
            found.append((ask(), (time.monotonic() - started) * 1000))
        except (ScanFailed, ValueError) as e:
            failed.append((engine, str(e)))
    return found, failed


def judge(cfg, v: SpamVerdict, arrival: Arrival | None):
    """One scanner's verdict as the pipeline's: a Score (mode score, or own mode's marking),
    or a Reject / Defer (own mode)."""
    rules = ",".join(v.symbols[:SHOWN_RULES]) + (",..." if len(v.symbols) > SHOWN_RULES else "")
    reason = f"{v.engine} {v.action} {v.score:g}/{v.required:g}: {rules or 'no rules'}"
    if cfg.mode == "score":
        return Score(round(v.score, 1), reason, tests=v.symbols)
    refuse = v.action == "reject" or (v.engine == spamd.ENGINE and cfg.reject_score and v.score >= cfg.reject_score)
    if refuse:
        filing = _filtering(arrival) if arrival is not None else [True]
        if all(filing):
            return Reject(replies.spam_tagged(v.engine), "spam-scan")
        boxes = _filtered_boxes(arrival)
        marked = Score(0.0, reason, tests=v.symbols, spam=True)
        return (marked, *junk_filing(arrival, boxes)) if boxes else marked
    if v.action in ("greylist", "soft reject"):
        return Defer(replies.GREYLISTED, "spam-scan-greylist")
    return Score(0.0, reason, tests=v.symbols, spam=v.spam)


def _not_scanned(why: str) -> AddHeaders:
    return AddHeaders((f"{HEADER}: no ({why})".encode("ascii", "replace"),))


def _filtering(arrival: Arrival) -> list[bool]:
    """For each recipient: does it want spam filtering (its domain's spam_scan, its
    mailboxes' spam_filter)? Recipients outside our domains always do."""
    directory, out = arrival.directory, []
    for accepted in arrival.envelope.resolved or [None]:
        if accepted is None or directory is None or not accepted.resolution.local_domain:
            out.append(True)
            continue
        d = directory.domain(accepted.address.rpartition("@")[2])
        boxes = accepted.mailboxes
        out.append((d is None or d.spam_scan) and (not boxes or any(m.spam_filter for m in boxes)))
    return out


def _filtered_boxes(arrival: Arrival) -> tuple[str, ...]:
    """The mailboxes whose spam goes to Junk (own mode's reject when not all recipients want it)."""
    return tuple(m.address for a, on in zip(arrival.envelope.resolved, _filtering(arrival)) if on
                 for m in a.mailboxes if m.spam_filter)


def check(settings, data: bytes, *, ip: str, helo: str, sender: str) -> tuple[list[str], list, str | None]:
    """`mailctl check message`: (lines saying what each scanner answered, the Scores they
    add, the reply their own verdict means or None)."""
    cfg = getattr(settings, "spam_scan", None)
    if cfg is None or not cfg.enabled or not (cfg.rspamd or cfg.spamd):
        return ["scanners not asked (spam_scan.enabled is false)"], [], None
    if len(data) > cfg.max_size_kb * 1024:
        return ["scanners not asked (over spam_scan.max_size_kb)"], [], None
    found, failed = scan(cfg, data, ip=ip, helo=helo, sender=sender)
    lines, scores, reply = [], [], None
    for engine, why in failed:
        lines.append(f"{engine}: no verdict: {why}")
        if cfg.on_failure == "defer":
            reply = reply or replies.SPAM_SCANNER_UNAVAILABLE
    for v, ms in found:
        lines.append(f"{v.engine}: {v.action}, score {v.score:g} (its threshold {v.required:g}), {ms:.0f} ms: "
                     f"{','.join(v.symbols) or 'no rules'}")
        verdict = judge(cfg, v, None)
        for one in verdict if isinstance(verdict, tuple) else (verdict,):
            if isinstance(one, Score):
                scores.append(one)
            elif isinstance(one, (Reject, Defer)):
                reply = reply or one.reply
    return lines, scores, reply


def status(settings) -> str:
    """`mailctl status`: whether rspamd and spamd answer."""
    cfg = getattr(settings, "spam_scan", None)
    if cfg is None or not cfg.enabled:
        return "off"
    meanwhile = "accepted unscanned" if cfg.on_failure == "accept" else "deferred"
    timeout = min(2.0, float(cfg.timeout_s))
    parts = []
    for name, address, ping in (("rspamd", cfg.rspamd, rspamd.ping), ("spamd", cfg.spamd, spamd.ping)):
        if address:
            parts.append(f"{name} answers" if ping(address, timeout) else f"{name} does NOT answer (mail is {meanwhile})")
    return "; ".join(parts) or "no scanner configured"
