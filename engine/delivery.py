"""Delivering one accepted message: expand recipients through the directory, write every
local copy and the queue entry for external targets, and make them visible together.

All copies are staged first (written and fsync'd in tmp/, queue/messages/ and a temp
envelope); only when every one succeeded are they committed, by renames, which need no
room on a full disk. If anything fails, every staged copy is removed (and any committed
one withdrawn), so a message is either delivered to all its recipients or visible nowhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .directory import Directory
from .errors import NotFound, QuotaExceeded
from .largemsg import LargeMessage, stage_into
from .foldernames import INBOX
from .maildir import Maildir
from .queue import Queue
from .root import Root
from .smtp.replies import OVER_QUOTA_PERM, OVER_QUOTA_TEMP, Rejection
from .srs_forward import forwarded_sender, reverse_recipient


@dataclass
class Outcome:
    delivered: list[str] = field(default_factory=list)    # mailbox addresses written
    queue_id: str | None = None                           # queue item for external targets
    queue_ids: list[str] = field(default_factory=list)    # all of them (one per envelope sender: SRS)
    external: list[str] = field(default_factory=list)
    rejected: dict[str, Rejection] = field(default_factory=dict)   # recipient -> why


def to_storage(data: bytes) -> bytes:
    """Maildir files use LF line ends, as Dovecot writes them; IMAP adds CR back.

    Large messages are converted in 1 MiB slices, so this thread lets go of the GIL
    between slices and the server's event loop is not held for the whole message."""
    step = 1 << 20
    if len(data) <= step:
        return bytes(data).replace(b"\r\n", b"\n")
    parts, i, n = [], 0, len(data)
    while i < n:
        j = min(i + step, n)
        if data[j - 1:j] == b"\r":        # never split a CRLF
            j += 1
        parts.append(bytes(data[i:j]).replace(b"\r\n", b"\n"))
        i = j
    return b"".join(parts)


def trace_headers(sender: str, mailbox: str) -> bytes:
    return f"Return-Path: <{sender}>\nDelivered-To: {mailbox}\n".encode()


def with_grace(quota_bytes: int, grace_percent: float) -> int:
    """What a mailbox may hold after one more message, given a grace over its quota."""
    return quota_bytes + int(quota_bytes * grace_percent / 100)


def deliver(root: Root, settings, directory: Directory, sender: str, recipients: list[str],
            data: "bytes | LargeMessage", source: str = "local", queue_external: bool = True,
            auth_user: str = "", before_commit=None, assign_uids: bool = True,
            quota_grace_percent: float = 0, folder_for=None, content_for=None) -> Outcome:
    """Deliver data to recipients. Local domains only receive; external addresses that
    come out of aliases and forwards are queued. Returns what happened per recipient.

    before_commit(staged, queued), when given, runs once everything is staged and before
    anything is committed (the pickup folder records what to finish after a crash);
    queued is a list of queue items: copies forwarded to other domains go out with their
    own (SRS) sender (engine/srs_forward.py), so one message may need several.

    assign_uids=False leaves IMAP UIDs to the next sync of the folder (SMTP intake: no
    uidlist dotlock per message); the copies are just as durable.

    quota_grace_percent lets a message take a mailbox that far past its quota (SMTP,
    which refuses mailboxes already full at RCPT: engine.smtp.quota).

    folder_for(mailbox address), when given, names the folder a copy goes to ('' or a
    folder that does not exist: INBOX), as the acceptance pipeline's stages decided; a
    tuple of folders puts a copy in each (Sieve's fileinto :copy beside keep), an entry
    (folder, flags) stores that copy with those flags (Sieve's imap4flags), () none.

    content_for(mailbox address), when given, is that mailbox's own version of the message
    (Sieve's editheader changed its header) or None for the common one."""
    outcome = Outcome()
    mailboxes: dict[str, object] = {}
    external: list[str] = []
    senders: dict[str, list[str]] = {}        # envelope sender -> external targets
    for rcpt in recipients:
        res = reverse_recipient(root, settings, directory, rcpt) or directory.resolve(rcpt, sender)
        if not res.ok:
            outcome.rejected[rcpt] = res.rejection
            continue
        if not res.local_domain and not queue_external:
            continue
        for account in res.mailboxes:
            mailboxes.setdefault(account.address, account)
        fresh = [ext for ext in res.external if ext not in external]
        if fresh:
            # a local address forwarding to another domain: an SRS sender (so SPF passes there)
            out = forwarded_sender(root, settings, directory, sender, res.address) if res.local_domain else sender
            external += fresh
            senders.setdefault(out, []).extend(fresh)
    large = isinstance(data, LargeMessage)     # megabytes: written in pieces, never joined
    body = None if large else to_storage(data)
    staged = []
    queued = []
    committed = 0

    def stage(box, address, quota, folder=INBOX, flags=()):
        if large:       # (a large message's copy gets no flags: stage_into takes none yet)
            return stage_into(box, trace_headers(sender, address), data, assign_uids, quota, folder)
        own = content_for(address) if content_for is not None else None
        return box.stage(trace_headers(sender, address) + (body if own is None else to_storage(own)), folder, flags,
                         assign_uid=assign_uids, quota_bytes=quota)

    def stage_all(box, address, quota) -> list:
        chosen = folder_for(address) if folder_for is not None else ""
        if not isinstance(chosen, tuple):
            return [stage_filed(box, address, quota, chosen)]
        items = []
        try:
            for entry in dict.fromkeys(chosen):       # each folder once; (folder, flags) with flags
                folder, flags = entry if isinstance(entry, tuple) else (entry, ())
                items.append(stage_filed(box, address, quota, folder, flags))
        except BaseException:
            for item in items:
                item.abort()
            raise
        return items

    def stage_filed(box, address, quota, folder, flags=()):
        if folder and folder != INBOX:
            try:
                return stage(box, address, quota, folder, flags)
            except NotFound:
                if not box.path.is_dir():
                    raise                 # no Maildir yet: made below, then INBOX
        return stage(box, address, quota, INBOX, flags)

    try:
        for address, account in mailboxes.items():
            box = Maildir.for_account(root, account.domain, account.local)
            quota = int(account.quota_mb * 1024 * 1024)
            limit = with_grace(quota, quota_grace_percent)
            try:
                try:
                    items = stage_all(box, address, limit)
                except NotFound:          # first mail: make the Maildir (no stat per delivery)
                    box.create(list(settings.mailbox.default_folders), quota)
                    items = stage_all(box, address, limit)
                staged.extend((address, item) for item in items)
            except QuotaExceeded:
                perm = settings.relay.over_quota_permanent
                outcome.rejected[address] = OVER_QUOTA_PERM if perm else OVER_QUOTA_TEMP
        if queue_external:
            for out, targets in senders.items():
                queued.append(Queue(root).stage(out, targets, data, source=source, auth_user=auth_user))
        if before_commit is not None:
            before_commit(staged, queued)
        for address, item in staged:
            item.commit()
            committed += 1
            if address not in outcome.delivered:      # several copies of one mailbox: once
                outcome.delivered.append(address)
        for item in queued:
            outcome.queue_ids.append(item.commit())
        if queued:
            outcome.queue_id = outcome.queue_ids[0]
            outcome.external = external
    except BaseException:
        # Every write came before the first commit, so what fails here is usually staging;
        # a commit that fails (a rename into a directory that needs a new block on a full
        # disk) withdraws the copies already committed: the sender will try again.
        for n, (_address, item) in enumerate(staged):
            if n < committed:
                item.withdraw()
            else:
                item.abort()
        outcome.delivered.clear()
        for n, item in enumerate(queued):       # several when copies have their own (SRS) sender
            if n < len(outcome.queue_ids):
                item.withdraw()
            else:
                item.abort()
        raise
    return outcome
