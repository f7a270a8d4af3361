"""The acceptance pipeline: every stage a message passes, in order, in one place.

Every way in uses it: SMTP (engine/smtp/server.py: RCPT_STAGES at each RCPT TO, STAGES
after DATA), the pickup folder, sendmail(1) and `mailctl send` (engine/accept/local.py).

Where a new stage goes:
  - it needs only the envelope (access lists, DNSBL, greylisting): RCPT_STAGES, after
    recipient_policy (so it sees where the recipient resolves);
  - it reads the message (SPF/DKIM/DMARC, virus and spam scanners): STAGES, before
    mailbox_quota;
  - it decides per mailbox (Sieve, autoreply): STAGES, just before deliver.
A running server's pipeline is runtime.pipeline; Pipeline.add / add_rcpt put a stage in
it (tests add theirs that way), so a stage never touches protocol code.
"""
from __future__ import annotations

from . import (accesscheck, antivirus, attachments, authcheck, dnslists, greylisting, helochecks, rcpt, sendlimits,
               sieving, signature, spamscan, spamscore, stages)
from .arrival import Arrival
from .verdicts import CONTINUE, ENDS, AddHeaders, FileInto, Score

# At RCPT TO, in order, until one refuses.
RCPT_STAGES = (
    rcpt.recipient_limit,       # limits.max_recipients: 452
    rcpt.recipient_policy,      # relay, unknown user, list rules: where it resolves
    rcpt.domain_size,           # the domain's size limit against SIZE=
    accesscheck.access_lists,   # sender/recipient block lists, the IP range's directions: 550/530
    helochecks.helo_syntax,     # port 25: HELO not an FQDN or the client's literal: score or 550
    helochecks.helo_forged,     # port 25: HELO naming us from outside: score or 550
    helochecks.reverse_dns,     # port 25: no forward-confirmed reverse DNS: score or 550
    helochecks.sender_domain,   # port 25: sender domain with no MX/A, null MX: score or 550
    dnslists.envelope_lists,    # port 25: DNSBL (client IP), RHSBL (sender, HELO): Score or 550
    greylisting.greylisting,    # port 25: 451 4.7.1 to a first try (greylist.enabled)
    sendlimits.send_limit_rcpt,     # AUTH: 451 4.7.1 to an external recipient past the account's limits
    rcpt.mailbox_full,          # every mailbox it reaches is full
)

# After the data arrived, in order, until one ends it.
STAGES = (
    stages.line_ends,           # bare CR / LF: refused, or mended for trusted clients
    stages.header_sender,       # From: owned by the authenticated user
    stages.complete_headers,    # Date, Message-ID (and From for injected mail)
    accesscheck.incoming_relay,     # from our backup MX: the checks below see its client's IP
    dnslists.relayed_client_lists,  # port 25, from an incoming relay: DNSBL on its original client
    stages.received,            # our Received line, on top
    authcheck.check_authentication,     # port 25: SPF, DKIM, ARC, DMARC; Authentication-Results
    dnslists.uri_lists,         # port 25: URI lists (SURBL, URIBL) on the body's URL domains: Score or 550
    spamscan.scan_spam,         # port 25: rspamd / spamd: their Score (or own verdict); never a 5xx when down
    spamscore.spam_score,       # port 25: the Scores' sum: X-Spam-* and Junk at the mark, 550 at the reject score
    antivirus.scan_viruses,     # every way in: clamd / scanner command; 554 5.7.1, strip, discard; 451 when down
    attachments.block_attachments,  # port 25 (and submission if set): blocked files replaced by a note, or 554 5.7.1
    signature.add_signature,    # AUTH: the account's or domain's signature in its text and HTML parts
    stages.mailbox_quota,       # port 25: a mailbox that cannot take it refuses it all
    sendlimits.send_limit,      # the account's sending limits, checked and counted with the commit
    sieving.sieve_filter,       # each local mailbox's Sieve scripts: its folder, redirects (engine/sieve/)
    stages.deliver,             # every copy and the queue item, all or nothing
    stages.bounce_refused,      # DSN for recipients refused after acceptance
)


class Pipeline:
    """The two ordered stage lists one server (or one `mailctl send`) uses."""

    def __init__(self, stage_list=STAGES, rcpt_stage_list=RCPT_STAGES):
        self.stages = list(stage_list)
        self.rcpt_stages = list(rcpt_stage_list)

    def add(self, stage, *, before: str = "mailbox_quota") -> None:
        """Put a stage (a function of an Arrival) before the stage of that name."""
        _insert(self.stages, stage, before)

    def add_rcpt(self, stage, *, before: str | None = None) -> None:
        """Put a RCPT-time stage (a coroutine function of a RcptCheck) before the stage of
        that name, or last."""
        _insert(self.rcpt_stages, stage, before)

    def names(self) -> list[str]:
        return [s.__name__ for s in self.stages]

    async def check_recipient(self, check: rcpt.RcptCheck):
        """Run the RCPT-time stages: the first refusal (Reject or Defer), else CONTINUE.
        A Score is kept in the transaction (once per reason) for the after-DATA stages."""
        for stage in self.rcpt_stages:
            verdicts = await stage(check)
            for verdict in verdicts if isinstance(verdicts, tuple) else (verdicts,):    # several Scores
                if isinstance(verdict, Score):
                    check.transaction.setdefault("scores", {})[verdict.reason] = verdict
                elif isinstance(verdict, ENDS):
                    return verdict
        return CONTINUE

    def run(self, arrival: Arrival):
        """Run every stage on the arrival (blocking: call it in a worker thread). Returns
        the Reject, Defer or Discard that ended it, or CONTINUE when it went through
        (arrival.outcome then says where every copy went)."""
        for stage in self.stages:
            verdicts = stage(arrival)
            for verdict in verdicts if isinstance(verdicts, tuple) else (verdicts,):
                if isinstance(verdict, AddHeaders):
                    arrival.add_headers(verdict.lines, verdict.on_top)
                elif isinstance(verdict, FileInto):
                    arrival.file_into(verdict.folder, verdict.mailboxes)
                elif isinstance(verdict, Score):
                    arrival.scores.append(verdict)
                elif isinstance(verdict, ENDS):
                    return verdict
        return CONTINUE


def _insert(stage_list: list, stage, before: str | None) -> None:
    if before is None:
        stage_list.append(stage)
        return
    for i, existing in enumerate(stage_list):
        if existing.__name__ == before:
            stage_list.insert(i, stage)
            return
    raise ValueError(f"no stage named {before!r}")
