"""The Sieve stage of the acceptance pipeline: for each local mailbox the message
reaches, the global before scripts, the account's active script and the after scripts
decide where its copy goes.

What is applied now: the folders of each mailbox (a copy for each fileinto and keep; a
folder that does not exist is made when the script said :create, else that copy goes to INBOX),
redirects (queued with an SRS sender when the hook before the commit runs, so they go
out only with the delivery), discard (no copy in that mailbox; the whole message when every
mailbox discards), reject when every mailbox's script rejects (else logged, kept); a vacation
action's reply, once per sender per period, queued with the delivery (autoreply.py); imap4flags' flags are stored with
each copy (not on a large message's yet). A script error or a limit files into INBOX and is logged;
mail is never lost."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

from ..errors import MailError
from ..foldernames import INBOX
from ..smtp import replies
from . import autoreply, scriptnotice
from .verdicts import CONTINUE, Discard, FileInto, Reject
from ..sieve.actions import Result, failed
from ..sieve.duplicates import DuplicateStore
from ..sieve.interp import Script
from ..sieve.lexer import SieveError
from ..sieve.message import SieveMessage
from ..sieve.scripts import active_script, global_scripts, include_loader

log = logging.getLogger("mailctl.sieve")
_CACHE_MAX = 256
_compiled: dict[str, Script | SieveError] = {}      # script text -> compiled (or its error)


def compiled(text: str) -> Script:
    """A script compiled once per text (the same text in many mailboxes compiles once)."""
    found = _compiled.get(text)
    if found is None:
        try:
            found = Script(text)
        except SieveError as e:
            found = e
        if len(_compiled) >= _CACHE_MAX:
            _compiled.clear()
        _compiled[text] = found
    if isinstance(found, SieveError):
        raise found
    return found


def environment(arrival) -> dict:
    """The environment items (RFC 5183) this delivery knows: our host name and its domain,
    and the client's address when it came over the network."""
    host = arrival.hostname or ""
    return {"host": host, "domain": host.partition(".")[2] or host, "remote-ip": arrival.envelope.peer_ip or arrival.envelope.client_ip or ""}

def spamtest_top(settings) -> float:
    """The spam score spamtest calls 10 (and :percent 100): twice spam.mark_score, so a
    message just at the mark is 5 or 6 of 10."""
    return 2 * float(settings.spam.mark_score)

def global_chain(root_path: Path) -> tuple[list, list]:
    """The global before and after scripts: read once for a message, not per mailbox."""
    return global_scripts(root_path, "before"), global_scripts(root_path, "after")


def script_chain(home: Path, root_path: Path, shared: tuple[list, list] | None = None) -> list[tuple[str, str]]:
    """(name, text) of the scripts that run for one mailbox, in order: the global before
    scripts, the account's active one, the global after scripts."""
    before, after = shared if shared is not None else global_chain(root_path)
    personal = active_script(home)
    return [*before, *([personal] if personal is not None else []), *after]


def run_scripts(home: Path, root_path: Path, message: SieveMessage, mailbox_exists,
                chain: list[tuple[str, str]] | None = None) -> Result | None:
    """The result of before + personal + after scripts (chain, when the caller read it),
    or None when no script applies. The next script runs only while the implicit keep
    stands (as Pigeonhole's sequence)."""
    if chain is None:
        chain = script_chain(home, root_path)
    if not chain:
        return None
    total = Result()
    for name, text in chain:
        try:
            load = include_loader(home, root_path, compiled)
            result = compiled(text).link(load).run(message, mailbox_exists, load)
        except SieveError as e:
            result = failed(str(e))
        if result.error:
            _report_once(home, name, result.error)
            result.failed_script = name
            return result
        total.actions += result.actions
        total.keep_flags = result.keep_flags
        if result.raw is not None:           # editheader: the next script sees the edited message
            total.raw = result.raw
            message = dataclasses.replace(message, raw=result.raw)
        if not result.implicit_keep:
            total.implicit_keep = False
            break
    return total


_reported: set[tuple[str, str, str]] = set()


def _report_once(home: Path, name: str, error: str) -> None:
    """A broken script is logged once per process and error (then at debug level), not at
    every message it fails on; every such message still goes to INBOX."""
    key = (str(home), name, error)
    if key in _reported:
        log.debug("sieve: %s: script %s failed again: %s", home.name, name, error)
        return
    if len(_reported) > 10_000:
        _reported.clear()
    _reported.add(key)
    log.warning("sieve: %s: script %s failed: %s; its messages go to INBOX", home.name, name, error)


def sieve_filter(arrival):
    """Pipeline stage (before deliver): run each local mailbox's scripts."""
    from ..maildir import Maildir
    env = arrival.envelope
    if arrival.directory is None or arrival.root is None:
        return CONTINUE
    root_path = Path(arrival.root.path)
    raw = None                      # the message as the scripts see it: made for the first script
    shared = None                   # the global scripts: read for the first mailbox
    verdicts: list = []
    discarded, rejected, mailboxes = [], [], []
    outside = False                 # a copy also goes elsewhere (a forward): never Discard it all
    # Redirects to local addresses are followed here, not queued: their mailboxes' scripts
    # run in turn and they join this delivery (all or nothing). One to a mailbox whose
    # scripts already ran for this message (a loop), or past limits.max_forward_depth,
    # leaves the copy in the redirecting mailbox's INBOX: nothing lost, no mail storm.
    pending = [(rcpt, 0) for rcpt in env.recipients]
    max_depth = getattr(getattr(arrival.settings, "limits", None), "max_forward_depth", 10)
    while pending:
        rcpt, depth = pending.pop(0)
        try:
            res = arrival.directory.resolve(rcpt, env.sender)
        except MailError:
            continue
        if not getattr(res, "ok", False):
            continue
        outside = outside or bool(res.external) or not res.local_domain
        for account in res.mailboxes:
            if account.address in mailboxes:
                continue
            mailboxes.append(account.address)
            try:
                box = Maildir.for_account(arrival.root, account.domain, account.local)
                if shared is None:
                    shared = global_chain(root_path)
                chain = script_chain(box.path, root_path, shared)
                if not chain:               # the usual case: no message parsed, nothing copied
                    continue
                if raw is None:
                    raw = arrival.head() if not isinstance(arrival.content, (bytes, bytearray)) \
                        else bytes(arrival.content)
                message = SieveMessage(raw, env.sender, account.address, spam_max=spamtest_top(arrival.settings),
                                       server=environment(arrival),
                                       duplicates=DuplicateStore(arrival.root, account.address))
                result = run_scripts(box.path, root_path, message, folder_check(box), chain)
            except (MailError, OSError, ValueError) as e:      # an unreadable script: INBOX
                log.warning("sieve: %s: scripts not run (%s); the message goes to INBOX", account.address, e)
                continue
            if result is None:
                continue
            if result.error and "/" not in result.failed_script:     # the user's own script
                _tell_owner(arrival.root, box, account.address, result.error)
            autoreply.queue_replies(arrival, account.address, message, result)
            autoreply.queue_notifications(arrival, account.address, message, result)
            local = [t for t in result.redirects() if arrival.directory.domain(t.rpartition("@")[2].lower())]
            verdicts += _apply(arrival, box, account.address, result, discarded, rejected, set(local))
            for target in local:
                if depth + 1 > max_depth or _reached(arrival.directory, target, env.sender, mailboxes):
                    log.info("sieve: %s: redirect to %s %s; the copy stays in its INBOX", account.address, target,
                             "loops" if depth + 1 <= max_depth else "goes past limits.max_forward_depth")
                    if not result.folders():         # its only copy was to go there
                        verdicts.append(FileInto(INBOX, (account.address,)))
                    continue
                arrival.extra_recipients.append(target)
                pending.append((target, depth + 1))
                outside = True
    if mailboxes and len(discarded) == len(mailboxes) and not outside:
        return Discard("sieve: discarded by every recipient's script")
    if mailboxes and len(rejected) == len(mailboxes) and not outside:
        return Reject(replies.sieve_rejected(rejected[0]), "sieve")
    return tuple(verdicts) or CONTINUE


def _tell_owner(root, box, address: str, error: str) -> None:
    """The owner learns once that a script fails (scriptnotice.py); never at the cost of the message."""
    try:
        scriptnotice.notify_once(root, box, address, error)
    except (MailError, OSError) as e:
        log.warning("sieve: %s: the notice of a script error was not delivered: %s", address, e)


def folder_check(box):
    def exists(name: str) -> bool:
        if name.upper() == INBOX:
            return True
        try:
            return any(f.name == name for f in box.list_folders())
        except (MailError, OSError):
            return False
    return exists


def _reached(directory, target: str, sender: str, mailboxes: list[str]) -> bool:
    """Does the redirect target lead back to a mailbox whose scripts ran for this message?"""
    try:
        res = directory.resolve(target, sender)
    except MailError:
        return False
    return any(m.address in mailboxes for m in getattr(res, "mailboxes", ()))


def _apply(arrival, box, address: str, result: Result, discarded: list, rejected: list,
           local: set[str] = frozenset()) -> list:
    reason = result.rejection()
    if reason is not None:
        rejected.append(reason)
        log.info("sieve: %s: script rejects the message; kept unless every recipient's does", address)
        return []
    if result.raw is not None:
        if isinstance(arrival.content, (bytes, bytearray)):
            arrival.contents[address] = result.raw       # editheader: this mailbox's copy
        else:
            log.info("sieve: %s: header edits not stored on a large message", address)
    folders = result.folders()
    redirects = result.redirects()
    queued = [r for r in redirects if r not in local]      # local ones join this delivery (sieve_filter)
    if queued:
        _queue_redirects(arrival, address, queued)
    if not folders:
        if not redirects:
            discarded.append(address)
        return [FileInto((), (address,))]      # no copy in this mailbox
    if not result.actions:
        # implicit keep alone: an earlier stage's choice (Junk) stands; into INBOX, with
        # the flags addflag/setflag gave it
        flags = _storable(result.keep_flags)
        if flags and arrival.folder_for(address) in ("", INBOX):
            return [FileInto(((INBOX, flags),), (address,))]
        return []
    exists = folder_check(box)
    targets: dict[str, tuple[str, ...]] = {}
    for folder, flags, create in folders:
        if folder != INBOX and not exists(folder) and create:
            with contextlib.suppress(MailError, OSError):
                box.create_folder(folder)
        folder = folder if folder == INBOX or exists(folder) else INBOX      # missing: INBOX
        if folder not in targets:
            targets[folder] = _storable(flags)
    return [FileInto(tuple((f, fl) if fl else f for f, fl in targets.items()), (address,))]   # a copy in each


def _storable(flags) -> tuple[str, ...]:
    """The flags a Maildir can store (\\Recent and bad keywords dropped, not fatal)."""
    from ..maildir import normalize_flags
    out = []
    for flag in flags:
        with contextlib.suppress(MailError):
            out += sorted(normalize_flags([flag]))
    return tuple(dict.fromkeys(out))


def _queue_redirects(arrival, address: str, targets: list[str]) -> None:
    """Queue the redirected copy when delivery commits (the hook before its commit), with
    an SRS sender as every forward (engine/srs_forward.py)."""
    from ..queue import Queue
    from ..srs_forward import forwarded_sender
    previous = arrival.before_commit
    env = arrival.envelope

    def hook(staged, queued):
        if previous is not None:
            previous(staged, queued)
        sender = forwarded_sender(arrival.root, arrival.settings, arrival.directory, env.sender, address) \
            if env.sender else ""
        content = arrival.content
        data = bytes(content) if isinstance(content, (bytes, bytearray)) else content
        item = Queue(arrival.root).stage(sender, list(targets), data, source=env.queue_source, auth_user=env.auth_user)
        queued.append(item)
    arrival.before_commit = hook

