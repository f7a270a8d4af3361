"""`mailctl check message`: every stage's verdict on a saved message as if it came in on
port 25 from a client, assembled from each stage's own explain/check function (no rule is
copied here): the access lists (engine/access/explain.py), SPF/DKIM/ARC/DMARC
(authcheck.check_message), the HELO and sender checks (helochecks.explain), the block
lists and the spam score (spamreport.check_message), the virus scan (antivirus.check).

With recipients, each one's RCPT-time verdicts too: where it resolves (the relay policy),
the recipient block list and the IP range's direction (accesscheck.recipient_refusal),
the HELO checks and block lists as they treat it (postmaster is never refused by them),
greylisting's would-be verdict (nothing is written), its domain's spam thresholds, and
the reply it would get. Blocking (DNS, the scanners).
"""
from __future__ import annotations

from ..access.entries import AccessEntries
from ..access.explain import explain as explain_access
from ..greylist import ALLOWED, DUE, PASSED, Greylist, client_network
from ..smtp import policy, replies
from . import accesscheck, antivirus, attachments, authcheck, clientgate, greylisting, helochecks, spamreport, spamscan
from ..errors import MailError
from .rcpt import to_postmaster
from .verdicts import Score

ACCEPTED = "250 accepted"


def explain_message(root, settings, directory, data: bytes, *, ip: str, helo: str, sender: str,
                    recipients=()) -> dict:
    """Every verdict (the --json output of `mailctl check message`); root may not exist."""
    state_root = root if root is not None and root.exists() else None
    from ..smtp.data import header_block
    access = explain_access(state_root or root, settings, ip, sender, header_block(data, 0))
    checked = access["checked_as"]          # an incoming relay's client
    rcpts = [_recipient(root, state_root, settings, directory, data, ip, checked, helo, sender, r) for r in recipients]
    resolved = [r.pop("_accepted") for r in rcpts]
    resolved = [a for a in resolved if a is not None]
    header, auth_reply = authcheck.check_message(settings, data, ip=checked, helo=helo, sender=sender)
    client = helochecks.explain(settings, directory, ip=checked, helo=helo, sender=sender)
    scanned, scanner_scores, scanner_reply = spamscan.check(settings, data, ip=checked, helo=helo, sender=sender)
    spam = spamreport.check_message(settings, data, ip=checked, helo=helo, sender=sender,
                                    scores=_scores(client) + scanner_scores, resolved=resolved, directory=directory)
    if scanner_reply and spam["verdict"] != spamreport.REJECT:     # rspamd / spamd's own verdict (mode "own")
        spam["reply"] = scanner_reply
    virus, virus_reply = _virus(settings, data, state_root, checked)
    blocked, blocked_reply = attachments.check(settings, data)      # attachment blocking runs after the scan
    virus_reply = virus_reply or blocked_reply
    reply = _after_data(auth_reply, spam, virus_reply)
    reply = next((c["reply"] for c in client if c["reply"]), reply)      # RCPT-time refusals come first
    if access["connect_refused"] or access["sender_blocked"]:            # and the access lists before them
        reply = str(replies.ACCESS_DENIED if access["connect_refused"] else replies.SENDER_BLOCKED)
    if rcpts:
        for r in rcpts:
            r["reply"] = str(replies.ACCESS_DENIED) if access["connect_refused"] else \
                str(replies.SENDER_BLOCKED) if access["sender_blocked"] else r["reply"] or \
                _after_data(auth_reply, r["spam"], virus_reply)
        taken = [r for r in rcpts if r["reply"].startswith("250")]
        reply = _after_data(auth_reply, spam, virus_reply) if taken else rcpts[0]["reply"]
    return {"authentication_results": header.decode(), "access": access, "helo_checks": client,
            "spam_scanners": scanned, "spam": spam, "virus_scan": virus, "attachments": blocked, "recipients": rcpts, "reply": reply}


def _scores(client: list[dict]) -> list[Score]:
    return [Score(c["points"], f"{c['check']}: {c['why']}") for c in client if c["result"] == "score"]


def _after_data(auth_reply: str, spam: dict, virus_reply: str | None) -> str:
    """The end of DATA's reply: DMARC's refusal first, then the spam score's, then the content scans' (virus, then attachments)."""
    reply = auth_reply
    if reply == ACCEPTED or (reply.startswith("250") and spam["verdict"] == spamreport.REJECT):
        reply = spam["reply"]
    if virus_reply and reply.startswith("250"):
        reply = virus_reply
    return reply


def _virus(settings, data: bytes, state_root, ip: str) -> tuple[str, str | None]:
    if not clientgate.virus_checks_run(settings, ip):
        return "not scanned (virus checks off for its IP range)", None
    return antivirus.check(settings, data, state_root)


def _recipient(root, state_root, settings, directory, data, ip, checked, helo, sender, address) -> dict:
    """One RCPT TO's verdicts; 'reply' is its RCPT refusal ('' when it passes RCPT)."""
    client = policy.Client(ip, "smtp", trusted=policy.in_networks(ip, settings.relay.trusted_networks))
    out = {"address": address, "resolves_to": None, "access": None, "helo_checks": [], "greylisting": None,
           "thresholds": None, "spam": None, "sieve": {}, "reply": "", "_accepted": None}
    accepted = policy.check_recipient(settings, directory, client, sender, address)
    if not isinstance(accepted, policy.Accepted):
        out["reply"] = str(accepted)
        return out
    out["resolves_to"] = accepted.address
    entries = AccessEntries(state_root or root)
    refused = accesscheck.recipient_refusal(settings, entries, directory, ip, client.trusted, sender, address,
                                            accepted.address)
    out["access"] = {"refused": refused[2] if refused else None}
    if refused:
        out["reply"] = str(refused[0])
        return out
    postmaster = to_postmaster(accepted)
    relay = clientgate.from_incoming_relay(settings, ip)
    if not relay:       # an incoming relay's address is not judged at RCPT (its client is, after DATA)
        out["helo_checks"] = helochecks.explain(settings, directory, ip=ip, helo=helo, sender=sender,
                                                postmaster=postmaster)
    spam = spamreport.check_message(settings, data, ip=checked, helo=helo, sender=sender,
                                    scores=_scores(out["helo_checks"]), resolved=[accepted], directory=directory)
    out["spam"], out["thresholds"] = spam, spamreport.thresholds(settings, directory, accepted)
    out["greylisting"] = _greylisting(state_root, settings, directory, ip, sender, accepted)
    rcpt_reply = next((c["reply"] for c in out["helo_checks"] if c["reply"]), "")
    if not rcpt_reply and spam["why"] == spamreport.LISTED:
        rcpt_reply = spam["reply"]          # a block list's reject text
    if not rcpt_reply and out["greylisting"]["verdict"] == "defer":
        rcpt_reply = str(replies.GREYLISTED)
    out["reply"], out["_accepted"] = rcpt_reply, accepted
    out["sieve"] = _sieve(state_root, settings, accepted, data, sender)
    return out


def _sieve(state_root, settings, accepted, data: bytes, sender: str) -> dict:
    """What each local mailbox's Sieve scripts would do with the message (sievetrial.py)."""
    from ..maildir import Maildir
    from .sieving import spamtest_top
    from .sievetrial import try_message
    if state_root is None:
        return {}
    out = {}
    for account in accepted.mailboxes:
        box = Maildir.for_account(state_root, account.domain, account.local)
        try:
            out[account.address] = try_message(box, state_root.path, account.address, data, sender,
                                               spamtest_top(settings))
        except (MailError, OSError) as e:
            out[account.address] = {"actions": [], "implicit_keep": True, "error": f"scripts not read: {e}"}
    return out


def _greylisting(state_root, settings, directory, ip: str, sender: str, accepted) -> dict:
    """Greylisting's would-be verdict for this triplet (read only)."""
    cfg = settings.greylist
    if not cfg.enabled:
        return {"verdict": "off", "why": "greylist.enabled is false"}
    why = greylisting.exempt(settings, directory, ip, sender, accepted)
    if why:
        return {"verdict": "pass", "why": why}
    if state_root is None:
        return {"verdict": "defer", "why": "no record (no server root)"}
    network = client_network(ip, cfg.ip_prefix_v4, cfg.ip_prefix_v6)
    found = Greylist(state_root, cfg).look(network, sender, accepted.address, write=False)
    deferred = found not in (PASSED, ALLOWED, DUE)
    return {"verdict": "defer" if deferred else "pass", "why": f"record {found}"}
