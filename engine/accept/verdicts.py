"""What a stage of the acceptance pipeline answers (engine/accept/pipeline.py).

A stage returns one verdict, or a tuple of them applied in order (a spam check may add a
header and file into Junk). The first Reject, Defer or Discard ends the pipeline: later
stages do not run and nothing is stored.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Continue:
    """Nothing to say: the next stage runs. Returned by the pipeline itself when the
    message went through every stage (arrival.outcome then says where it went)."""


CONTINUE = Continue()


@dataclass(frozen=True)
class AddHeaders:
    """Header lines (without line ends; a folded line keeps its CRLF + blank inside) for
    the message. They go at the end of the sender's header block, or on top when on_top
    (trace fields: Received, as RFC 5321 §4.4 wants). Later stages see them."""
    lines: tuple[bytes, ...]
    on_top: bool = False


@dataclass(frozen=True)
class FileInto:
    """Store into this folder instead of INBOX, for these mailbox addresses (every local
    mailbox when empty). A folder that does not exist means INBOX. A tuple of folders puts
    a copy in each (Sieve: fileinto :copy beside keep)."""
    folder: "str | tuple[str, ...]"
    mailboxes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Score:
    """Points toward the message's spam score (negative ones count against it). reason
    names the check and what it found ("DNSBL zen.example: 127.0.0.2"); it goes into
    X-Spam-Status and the log. A RCPT-time Score counts once per transaction however many
    recipients repeat it; the spam-score stage weighs the sum after DATA."""
    points: float
    reason: str
    tests: tuple[str, ...] = ()       # a spam scanner's rule names, for X-Spam-Status tests= (accept/spamscan.py)
    spam: bool = False                # a scanner's own verdict: marked whatever the total (spam_scan.mode = "own")


@dataclass(frozen=True)
class Reject:
    """Refuse the message for good: reply is the SMTP reply (5xx with its enhanced code).
    tag, when given, is what the transaction's log line lists under rejected=."""
    reply: str
    tag: str = ""


@dataclass(frozen=True)
class Defer:
    """Refuse it for now: reply is a 4xx SMTP reply; the sender tries again later."""
    reply: str
    tag: str = ""


@dataclass(frozen=True)
class Discard:
    """Accept it and keep nothing (the sender sees success); reason goes to the log."""
    reason: str


class Refused(Exception):
    """Raised by a delivery hook (Arrival.before_commit) to refuse the message at the
    moment it would be committed (a limit checked and counted in one step with the
    commit: accept/sendlimits.py). Nothing is stored; the deliver stage answers verdict."""

    def __init__(self, verdict: "Reject | Defer"):
        super().__init__(verdict.reply)
        self.verdict = verdict


Verdict = Continue | AddHeaders | FileInto | Score | Reject | Defer | Discard
ENDS = (Reject, Defer, Discard)         # verdicts that end the pipeline


def refusal(reply: str, tag: str = "") -> Reject | Defer:
    """Reject for a 5xx reply, Defer for a 4xx one."""
    return Defer(reply, tag) if reply[:1] == "4" else Reject(reply, tag)
