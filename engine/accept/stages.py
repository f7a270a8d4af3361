"""The stages every message passes after its data arrived, in the order pipeline.py lists
them. Each takes the Arrival and returns a verdict (engine/accept/verdicts.py); each runs
in a worker thread (it may read the disk), never on the event loop.
"""
from __future__ import annotations

import email.utils
import secrets
import time

from .. import delivery, headers as headers_mod, queue as queue_mod, storage_errors
from ..smtp import policy, quota, replies
from ..smtp.received import received_header
from .arrival import SUBMISSION, Arrival
from .mirror import mirror_addresses
from .verdicts import CONTINUE, AddHeaders, Refused, Reject, refusal


def line_ends(arrival: Arrival):
    """SMTP: a bare CR or LF (SMTP smuggling) is refused. Bare LFs that relay.bare_newline
    lets a client send were already made CRLF while DATA was read (smtp/data.py)."""
    if not (arrival.bare_cr or arrival.bare_lf):
        return CONTINUE
    return Reject(replies.BARE_LF if arrival.bare_lf else replies.BARE_CR)


def header_sender(arrival: Arrival):
    """An authenticated client sends only as the addresses its account owns (From:)."""
    env = arrival.envelope
    if not (env.by_smtp and env.auth_user):
        return CONTINUE
    for addr in policy.header_senders(arrival.header_block()):
        if not policy.owned_addresses_match(arrival.settings, arrival.directory, env.auth_user,
                                            policy.normalize_sender(addr) or ""):
            return Reject(replies.HEADER_FROM_NOT_OWNED)
    return CONTINUE


def complete_headers(arrival: Arrival):
    """Date and Message-ID when missing (RFC 6409 §8), for submitted mail and mail injected
    on this machine; injected mail without From gets one from its envelope sender."""
    env = arrival.envelope
    if env.by_smtp and not (env.source == SUBMISSION and env.vouched):
        return CONTINUE
    names = headers_mod.names_in(arrival.header_block())
    lines = headers_mod.missing(names, arrival.hostname, arrival.arrived)
    if not env.by_smtp and "from" not in names and env.sender:
        lines.append(f"From: <{env.sender}>".encode())
    return AddHeaders(tuple(lines)) if lines else CONTINUE


def received(arrival: Arrival):
    """Our Received line, on top (RFC 5321 §4.4)."""
    env = arrival.envelope
    if env.by_smtp:
        line = received_header(helo=env.helo, ip=env.peer_ip or env.client_ip, hostname=arrival.hostname, txid=env.txid,
                               esmtp=env.esmtp, tls_version=env.tls_version, cipher=env.tls_cipher,
                               auth_user=env.auth_user, recipients=env.recipients, now=arrival.arrived)
        return AddHeaders((line[:-2],), on_top=True)
    origin = "".join(c if c.isprintable() else "?" for c in env.origin or "localhost")
    line = (f"Received: from {origin} by {arrival.hostname} (mailctl) with local ({env.queue_source}) id "
            f"{secrets.token_hex(6)}; {email.utils.formatdate(arrival.arrived)}")
    return AddHeaders((line.encode(),), on_top=True)


def mailbox_quota(arrival: Arrival):
    """SMTP from a sender nobody vouched for: a mailbox that cannot take the message
    refuses the whole transaction (a refusal after 250 would mean a bounce to a sender
    that may be forged). Others get a DSN for that copy instead (bounce_refused)."""
    env = arrival.envelope
    if not env.by_smtp or env.vouched:
        return CONTINUE
    full = quota.first_refusing(arrival.root, arrival.settings,
                                [a for r in env.resolved for a in r.mailboxes], len(arrival.content))
    if full:
        return refusal(quota.full_reply(arrival.settings), f"{full}=quota")
    return CONTINUE


def deliver(arrival: Arrival):
    """Every local copy and the queue item for the rest, all or nothing (engine/delivery.py).
    A failure raises: the caller says what its client is told."""
    env, settings = arrival.envelope, arrival.settings
    smtp = env.by_smtp
    recipients = [*env.recipients, *(r for r in arrival.extra_recipients if r not in env.recipients)]
    mirrors = mirror_addresses(arrival.directory, env.sender, recipients)
    # SMTP: UIDs come at the reader's next sync, as for mail any MTA drops into a Maildir
    try:
        arrival.outcome = delivery.deliver(
            arrival.root, settings, arrival.directory, env.sender, [*recipients, *mirrors], arrival.content,
            source=env.queue_source, auth_user=env.auth_user, before_commit=arrival.before_commit,
            assign_uids=not smtp, quota_grace_percent=settings.mailbox.quota_grace_percent if smtp else 0,
            folder_for=arrival.folder_for if arrival.folders else None,
            content_for=arrival.contents.get if arrival.contents else None)
    except Refused as e:            # a check made with the commit refused it: nothing is stored
        return e.verdict
    for mirror in mirrors:          # the mirror is nobody's business but the administrator's
        why = arrival.outcome.rejected.pop(mirror, None)
        if why is not None:
            arrival.log.warning("mirror: %s: no copy for %s: %s", env.txid, mirror, why)
    return CONTINUE


def bounce_refused(arrival: Arrival):
    """SMTP: recipients accepted at RCPT but refused now (the directory changed, a mailbox
    filled up) get a DSN, as the client got 250 for the others; never to a sender nobody
    vouched for (backscatter): then the log alone says it."""
    env, outcome = arrival.envelope, arrival.outcome
    if not env.by_smtp or outcome is None or not outcome.rejected:
        return CONTINUE
    if not outcome.delivered and outcome.queue_id is None:
        return CONTINUE                     # nothing accepted: the client is told, no DSN
    arrival.log.warning("smtp: %s: %s: not delivered to %s%s", env.client_ip, env.txid,
                        ", ".join(f"{k} ({v})" for k, v in outcome.rejected.items()),
                        "" if env.vouched else "; no DSN to an unauthenticated sender")
    if env.vouched:
        _notify_failed(arrival, outcome.rejected)
    return CONTINUE


def _notify_failed(arrival: Arrival, rejected: dict) -> None:
    """A failure DSN for recipients refused after the message was accepted."""
    from ..outbound import dsn
    env, log = arrival.envelope, arrival.log
    now = time.time()
    item = queue_mod.Envelope(id=env.txid, sender=env.sender, recipients=[], created=now, next_attempt=now,
                              source="smtp")
    recipients = [queue_mod.Recipient(address=rcpt, status="failed", code=why.code, reply=str(why),
                                      dsn=why.status) for rcpt, why in rejected.items()]
    try:
        dsn.notify(arrival.root, arrival.settings, arrival.directory, item, recipients, "failed", arrival.head(),
                   now=now, log=log)
    except Exception as e:  # noqa: BLE001 - the accepted copies stand; the log says what was lost
        if storage_errors.is_storage_fault(e):
            log.error("smtp: %s: could not write the DSN for %s: %s", env.txid, ", ".join(rejected), e.strerror)
        else:
            log.exception("smtp: %s: could not write the DSN for %s", env.txid, ", ".join(rejected))
