"""What a stage of the acceptance pipeline sees: the envelope, the message, and what the
stages before it decided.

The message stays as it arrived: bytes in memory, or a LargeMessage (its head in memory,
the rest in an anonymous file, engine/largemsg.py) for anything of megabytes. Header
lines a stage adds go into the head, so a large message is never read into memory.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..largemsg import LargeMessage
from ..smtp.data import head_of, header_block

SMTP, SUBMISSION = "smtp", "submission"          # port 25; 587 and 465
PICKUP, SENDMAIL, SEND = "pickup", "sendmail", "send"      # the pickup folder, sendmail(1), mailctl send
CRLF = b"\r\n"
_UNKNOWN = -1


@dataclass
class Envelope:
    """Who handed the message in, and from whom to whom."""
    source: str                       # SMTP, SUBMISSION, PICKUP, SENDMAIL or SEND
    sender: str                       # '' for the null sender
    recipients: list[str]
    txid: str = ""                    # the transaction's id (Received line, log, DSN)
    client_ip: str = ""               # the client the checks judge (behind an incoming relay: its client)
    peer_ip: str = ""                 # the relay that handed it in, when client_ip is its client
    helo: str = ""
    esmtp: bool = True                # EHLO rather than HELO
    tls_version: str = ""             # '' without TLS
    tls_cipher: str = ""
    auth_user: str = ""               # the authenticated account
    trusted: bool = False             # the client is in relay.trusted_networks
    origin: str = ""                  # injected mail: who handed it in ("local user x (uid n)")
    resolved: list = field(default_factory=list)    # SMTP: policy.Accepted of each RCPT
    spf: object = None                # SMTP: the SPF result greylisting found at RCPT (reused)
    scores: tuple = ()                # SMTP: the verdicts.Score the RCPT-time stages gave
    account: str = ""                 # sendmail(1) through run/submit.sock: the account the caller's
    # login is, whose sending limits it counts against (accept/sendlimits.py; SMTP uses auth_user)

    @property
    def by_smtp(self) -> bool:
        return self.source in (SMTP, SUBMISSION)

    @property
    def vouched(self) -> bool:
        """Someone answers for the sender (authenticated or a trusted network): it may get
        DSNs; otherwise its sender may be forged and it gets none (backscatter)."""
        return bool(self.auth_user or self.trusted)

    @property
    def queue_source(self) -> str:
        """The name the queue, the log and the Received line give this way in."""
        return {SUBMISSION: SMTP, SEND: SENDMAIL}.get(self.source, self.source)


@dataclass
class Arrival:
    """One message on its way through the pipeline."""
    envelope: Envelope
    content: "bytes | bytearray | LargeMessage"
    root: object
    settings: object
    directory: object
    log: logging.Logger = logging.getLogger("mailctl")
    arrived: float = field(default_factory=time.time)     # the time for Received and Date
    offset: int = 0                   # where the sender's message starts (after lines put on top)
    eol: bytes = CRLF                 # the message's line end (injected mail may use LF)
    header_end: int | None = _UNKNOWN     # end of the sender's header block; None: it has none
    bare_cr: bool = False             # SMTP: line ends seen while reading DATA
    bare_lf: bool = False
    before_commit: object = None      # delivery's hook between staging and commit (pickup)
    added: list[bytes] = field(default_factory=list)      # header lines the stages added
    folders: dict[str, str] = field(default_factory=dict)  # mailbox address ('' = all) -> folder
    extra_recipients: list[str] = field(default_factory=list)  # local Sieve redirect targets (sieving.py)
    contents: dict[str, bytes] = field(default_factory=dict)   # mailbox -> its copy as editheader left it
    outcome: object = None            # engine.delivery.Outcome, once stored or queued
    hostname: str = ""                # ours (server.hostname unless given)
    scores: list = field(default_factory=list)      # verdicts.Score so far, the envelope's first
    counted: list[str] = field(default_factory=list)    # counters to bump (runtime.count, by the server)

    def __post_init__(self) -> None:
        self.scores = [*self.envelope.scores, *self.scores]
        if not self.hostname and self.settings is not None:
            self.hostname = self.settings.server.hostname

    def count(self, name: str) -> None:
        """Count an event (spam_marked ...): stages run in a worker thread, so the server
        adds these to its counters afterwards, on its event loop."""
        self.counted.append(name)

    def head(self) -> bytes:
        """The part of the message held in memory (all of it unless it is large)."""
        return head_of(self.content)

    def header_block(self) -> bytes:
        """The sender's header lines (without what we put on top), with their line ends."""
        if self.header_end in (None, _UNKNOWN):
            return header_block(self.content, self.offset)
        return bytes(self.head()[self.offset:self.header_end])

    def add_headers(self, lines, on_top: bool = False) -> None:
        data = b"".join(bytes(line) + self.eol for line in lines)
        if not data:
            return
        if on_top:
            self._insert(0, data)
            self.offset += len(data)
            if self.header_end not in (None, _UNKNOWN):
                self.header_end += len(data)
        else:
            at = self._header_end()
            if at is None:
                return                        # no header/body separator: left as sent
            self._insert(at, data)
            self.header_end = at + len(data)
        self.added.extend(bytes(line) for line in lines)

    def replace_header_block(self, block: bytes) -> None:
        """Put block (header lines with their line ends) where the sender's header lines
        are (a stage that removes forged fields: engine/accept/authcheck.py)."""
        old = self.header_block()
        self._insert(self.offset, block, replace=len(old))
        if self.header_end not in (None, _UNKNOWN):
            self.header_end += len(block) - len(old)

    def file_into(self, folder: str, mailboxes=()) -> None:
        for address in mailboxes or ("",):
            self.folders[address] = folder

    def folder_for(self, mailbox: str) -> "str | tuple[str, ...]":
        if mailbox in self.folders:      # () for this mailbox: no copy (Sieve discard, redirect)
            return self.folders[mailbox]
        return self.folders.get("", "")

    def _header_end(self) -> int | None:
        if self.header_end == _UNKNOWN:
            block = header_block(self.content, self.offset)
            self.header_end = self.offset + len(block) if block.endswith(CRLF) else None
        return self.header_end

    def _insert(self, at: int, data: bytes, replace: int = 0) -> None:
        content, end = self.content, at + replace
        if isinstance(content, LargeMessage):          # the header is in the head
            content.head = content.head[:at] + data + content.head[end:]
        elif isinstance(content, bytearray):
            content[at:end] = data
        else:
            self.content = content[:at] + data + content[end:]
