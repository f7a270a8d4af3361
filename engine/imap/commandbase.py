"""What every IMAP command family relies on: the session's attributes and methods,
declared here and provided by session.ImapSession; the `state` mark that dispatch
checks; and the helpers more than one family uses (mailbox names, sequence sets, the
thread pool, announcing what changed on disk).

A handler `cmd_NAME(self, tag, args)` returns the text of its tagged OK (None when it
wrote its own completion), or raises CommandError (errors.no / errors.bad), ParseError
or MailError for NO and BAD.
"""
from __future__ import annotations

import bisect
import time
from typing import TYPE_CHECKING

from .. import maildir as store
from ..errors import NotFound
from . import access
from .errors import bad, no
from .parser import as_atom, as_text, number, parse_sequence_set

if TYPE_CHECKING:
    from ..directory import Account
    from ..runtime import Runtime
    from .rev2 import Revision
    from .selected import Selected

RESCAN_THROTTLE_S = 0.25


def state(name):
    """When a command is allowed: "any", "noauth", "auth" or "selected" (RFC 3501 §3)."""
    def mark(fn):
        fn.state = name
        return fn
    return mark


class CommandBase:
    """The session as the command families see it. session.ImapSession sets each
    attribute and overrides each method below (tests/test_imap_families.py checks)."""
    runtime: Runtime
    account: Account | None           # None until LOGIN / AUTHENTICATE
    maildir: store.Maildir | None     # the account's, from login on
    selected: Selected | None         # after SELECT / EXAMINE
    enabled: set[str]                 # extensions ENABLEd (or enabled by use): CONDSTORE, QRESYNC, IMAP4rev2
    rev: Revision                     # rev2.REV1, or rev2.REV2 after ENABLE IMAP4rev2
    closing: bool                     # end the connection after this command
    deadline: float                   # time.monotonic() at which the running command stops
    _last_scan: float = 0.0           # when announce_changes last looked at the disk
    prescanned: tuple | None = None   # (Selected, its scan()) made in a command's trip (blocking_with_updates)
    search_saved: tuple | None = None  # (Selected, frozenset of UIDs): SEARCHRES's `$` (searchcmd.py)
    search_modseq: int = 0             # the last SEARCH MODSEQ's highest mod-sequence (RFC 7162 §3.1.5)

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    def hold(self, data: bytes) -> None:
        """Output the next send() carries along."""
        raise NotImplementedError

    async def untagged(self, text: str) -> None:
        raise NotImplementedError

    async def readline(self) -> bytes | None:
        raise NotImplementedError

    def capabilities(self) -> list[str]:
        raise NotImplementedError

    def append_limit(self) -> int:
        raise NotImplementedError

    def folder_name(self, token) -> str:
        """A mailbox argument (modified UTF-7 on the wire, UTF-8 for IMAP4rev2) as a
        checked Unicode name."""
        text = token if type(token) is str else as_text(token, "mailbox name")
        if text.upper() == "INBOX":
            return "INBOX"
        return store.canonical_name(self.rev.read_name(text))

    def mailbox(self, token, rev: Revision | None = None) -> access.Mailbox:
        """A mailbox argument in any namespace (access.py: the one place names and rights
        are decided); the caller then asks need() for the rights its command takes. rev:
        how the name is written when not as this session writes names (an IMAP URL's)."""
        text = token if type(token) is str else as_text(token, "mailbox name")
        text = "INBOX" if text.upper() == "INBOX" else (rev or self.rev).read_name(text)
        return access.resolve(self.runtime, self.account, self.maildir, text)

    def need(self, box: access.Mailbox, letters: str) -> frozenset:
        """This session's rights on box, after checking it holds every one of letters."""
        rights = access.rights_of(box, self.account.address)
        access.require(box, rights, letters)
        return rights

    async def check_selected_rights(self) -> None:
        """Rights taken away while a mailbox is selected count from the next command (and
        the next IDLE poll): without r the session may see nothing more of it, and ends."""
        sel = self.selected
        if sel is None or sel.access is None:
            return
        sel.rights = access.rights_of(sel.access, self.account.address)
        if "r" not in sel.rights:
            self.selected = None
            self.closing = True
            await self.send(b"* BYE Your right to read the selected mailbox was withdrawn\r\n")
            raise no("[NOPERM] Permission denied")

    async def blocking(self, fn, *args):
        return await self.runtime.run_blocking(fn, *args)

    async def open_folder(self, name: str, trycreate: bool = False) -> store.Folder:
        try:
            return await self.blocking(self.maildir.folder, name)
        except NotFound:
            raise no(("[TRYCREATE] " if trycreate else "[NONEXISTENT] ") + f"Mailbox {name!r} does not exist") from None

    async def open_target(self, box: access.Mailbox) -> store.Folder:
        """The folder an APPEND or COPY writes into (in any namespace); TRYCREATE when missing."""
        try:
            return await self.blocking(box.maildir.folder, box.name)
        except NotFound:
            raise no(f"[TRYCREATE] Mailbox {box.wire!r} does not exist") from None

    async def announce_changes(self, throttle: bool = False, expunge: bool = True) -> None:
        """Send what other sessions and deliveries changed. With throttle (UID FETCH and
        UID SEARCH, where updates are optional), skip when we looked moments ago. Without
        expunge (after FETCH, STORE, SEARCH: RFC 3501 §7.4.1), expunged messages stay
        numbered as ghosts and no EXPUNGE is sent."""
        sel = self.selected
        if sel is None:
            return
        await self.check_selected_rights()
        now = time.monotonic()
        if throttle and now - self._last_scan < RESCAN_THROTTLE_S and not sel.ghosts and not sel.rescan_due:
            return
        self._last_scan = now
        prescanned, self.prescanned = self.prescanned, None
        try:
            if prescanned is not None and prescanned[0] is sel:
                scanned = prescanned[1]
            else:
                scanned = None if sel.unchanged() else await self.blocking(sel.scan)
        except (FileNotFoundError, NotFound):
            if await self.blocking(sel.folder.path.is_dir):
                raise
            await self.mailbox_gone()
        if self.selected is not sel:
            return
        lines = sel.apply(scanned, expunge)
        if lines:
            await self.send(b"".join(lines))

    async def blocking_with_updates(self, fn, *args):
        """fn(*args) in a worker thread and, in the same trip, the scan of the selected
        folder when it changed, for the updates the command ends with (announce_changes):
        one trip where there were two, each waiting for a CPU under load. For commands
        after which any update may be sent (LIST, STATUS: not FETCH, STORE, SEARCH)."""
        sel = self.selected
        if sel is None or sel.unchanged():
            return await self.blocking(fn, *args)

        def both():
            result = fn(*args)
            try:
                self.prescanned = (sel, sel.scan())
            except (OSError, NotFound):  # the folder gone: announce_changes looks again
                pass
            return result
        return await self.blocking(both)

    async def mailbox_gone(self) -> None:
        """Another session deleted or renamed the selected mailbox: nothing this session
        could say of it would be true any more, so it ends, as Dovecot's does."""
        self.selected = None
        self.closing = True
        await self.send(b"* BYE The selected mailbox was deleted or renamed; please log in again\r\n")
        raise no("The selected mailbox no longer exists")

    def targets(self, token, uid: bool) -> list[int]:
        """The sequence numbers a sequence set argument selects (a set of UIDs when uid)."""
        text = as_atom(token, "sequence set")
        sel = self.selected
        if text == "$":             # SEARCHRES (RFC 5182): the saved result, by UID
            saved = self.search_saved
            uids = saved[1] if saved is not None and saved[0] is sel else ()
            return [i + 1 for i, u in enumerate(sel.uids) if u in uids] if uids else []
        if text.isdigit():          # one number, the most common set: no ranges to resolve
            n = number(text, f"sequence number in {text[:40]!r}", nonzero=True)
            if uid:
                uids = sel.uids
                i = bisect.bisect_left(uids, n)
                return [i + 1] if i < len(uids) and uids[i] == n else []
            if n > len(sel.msgs):
                raise bad(f"Invalid message sequence number {n} (the mailbox has {len(sel.msgs)})")
            return [n]
        ranges = parse_sequence_set(text)
        if not uid:
            count = len(sel.msgs)
            for a, b in ranges:
                for v in (a, b):
                    if v is not None and v > count:
                        raise bad(f"Invalid message sequence number {v} (the mailbox has {count})")
        return sel.seqs_for(ranges, uid)
