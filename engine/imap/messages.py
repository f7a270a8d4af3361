"""The IMAP commands on the messages of a mailbox, other than FETCH, SEARCH and APPEND
(appendcmd.py): COPY and MOVE, EXPUNGE (and UID EXPUNGE), CLOSE and UNSELECT.

CONDSTORE's STORE (UNCHANGEDSINCE, MODIFIED) and QRESYNC's VANISHED replies to EXPUNGE
go here.
"""
from __future__ import annotations

import contextlib
import os

from .. import maildir as store
from ..acl import rights as rightsmod
from ..errors import InvalidInput, NotFound, QuotaExceeded
from . import access, condstore, junklearn
from .commandbase import CommandBase, state
from .errors import bad, no
from .msgview import View
from .parser import as_atom
from .selected import flag_list

QUOTA_EXCEEDED = "[OVERQUOTA] Quota exceeded (mailbox for user is full)"   # Dovecot's text
EXPUNGED_ALREADY = "[EXPUNGEISSUED] Some messages were already expunged"  # Dovecot's FETCH text
_CHANGE_KINDS = {"FLAGS": "replace", "+FLAGS": "add", "-FLAGS": "remove"}   # Folder.flag_change's words


class MessageCommands(CommandBase):
    @state("selected")
    async def cmd_STORE(self, tag, args, uid=False):
        unchangedsince = None
        if len(args) == 4:      # STORE set (UNCHANGEDSINCE n) item flags (RFC 7162 §3.1.3)
            unchangedsince = condstore.parse_store_modifiers(args[1])
            args = [args[0], *args[2:]]
        if len(args) != 3:
            raise bad("STORE needs a sequence set, an item and flags")
        sel = self.selected
        if sel.readonly:
            raise no("[READ-ONLY] The mailbox is open read-only (EXAMINE)")
        if unchangedsince is not None:
            await condstore.enable(self)
        if uid:
            await self.announce_changes()
        seqs = self.targets(args[0], uid)
        item = as_atom(args[1], "store item").upper()
        silent = item.endswith(".SILENT")
        op = item[:-7] if silent else item
        if op not in ("FLAGS", "+FLAGS", "-FLAGS"):
            raise bad(f"Unknown STORE item {item[:20]}")
        raw_flags = args[2] if isinstance(args[2], list) else [args[2]]
        flags = set()
        for f in raw_flags:
            name = as_atom(f, "flag")
            if name.lower() == "\\recent":
                continue
            flags.add(name)
        try:
            flags = set(store.normalize_flags(flags))
        except InvalidInput as e:
            raise bad(str(e)) from None
        _check_store_rights(sel, op, flags)
        targets = [View.of(sel, s, None) for s in seqs]
        folder = sel.folder
        learned = {"spam": [], "ham": []}       # what a $Junk or $NotJunk set here teaches

        def apply(v, change, out, changed) -> bool:
            """One message's change; False when its file is gone."""
            try:
                msg = folder.apply_flag_change(v.msg, change)
            except NotFound:
                return False
            if msg is not v.msg:
                changed.append(msg)
                kind = junklearn.store_kind(self, sel.access, v.msg.flags, msg.flags)
                if kind:
                    learned[kind].append((msg.path, msg.size))
                v.msg = msg
            out.append(v)
            return True

        def work():
            # Against the flags each file has on disk now (not our copy): another
            # session's change made meanwhile is kept, and shows in our reply.
            change = folder.flag_change(**{_CHANGE_KINDS[op]: flags})
            out, changed, gone, modified = [], [], False, []
            live = [v for v in targets if not sel.is_ghost(v.msg)]  # expunged elsewhere: no FETCH
            if unchangedsince is not None:
                # Checked and changed in one step for every other mailctl process.
                with folder.modseqs() as ms:
                    _, now = ms.observe(store.current_message(v.msg) or v.msg for v in live)
                    for v in live:
                        if now[v.uid] > unchangedsince:
                            modified.append(v)
                        elif not apply(v, change, out, changed):
                            gone = True
                    top, new = ms.observe(changed)
            else:
                for v in live:
                    if not apply(v, change, out, changed):
                        gone = True
                top, new = folder.observe_modseqs(changed) if sel.condstore else (0, {})
            folder.flush_flag_changes()     # a user's own \Seen (shared folders): one write
            for kind, messages in learned.items():
                junklearn.put_up(self, kind, messages)
            for v in out:
                v.modseq = new.get(v.uid) or sel.modseq_of(v.uid)
            # A keyword new to the client (ours, or another session's on the same message)
            # comes in FLAGS before the FETCH that shows it.
            keywords = sel.read_keywords() if sel.unannounced(m.flags for m in changed) else None
            return out, changed, gone, keywords, modified, (top, new)

        known = {v.uid: v.msg.flags for v in targets} if silent else None   # the client's copy
        views, changed, gone, keywords, modified, modseqs = await self.blocking(work)
        for m in changed:
            sel.replace(m)
        if sel.condstore:
            sel.note_modseqs(*modseqs)
        lines = sel.keyword_updates(keywords) if keywords is not None else []
        if known is not None:
            # Only what the client cannot know: flags another session set or cleared.
            # With CONDSTORE each change's new mod-sequence too (RFC 7162 §3.1.3).
            changed_uids = {m.uid for m in changed} if sel.condstore else set()
            views = [v for v in views if v.msg.flags != _stored(op, known[v.uid], flags) or v.uid in changed_uids]
        texts: dict[tuple, bytes] = {}  # (flags, recent) -> encoded flag list
        for v in views:
            key = (v.msg.flags, v.recent)
            text = texts.get(key)
            if text is None:
                text = texts[key] = flag_list(v.flags).encode()
            if sel.condstore:   # UID and MODSEQ in every FETCH a change causes (§3.1)
                shown = b"" if known is not None and v.msg.flags == _stored(op, known[v.uid], flags) \
                    else b" FLAGS " + text
                lines.append(b"* %d FETCH (UID %d%s MODSEQ (%d))\r\n" % (v.seq, v.uid, shown, v.modseq))
            elif uid:
                lines.append(b"* %d FETCH (UID %d FLAGS %s)\r\n" % (v.seq, v.uid, text))
            else:
                lines.append(b"* %d FETCH (FLAGS %s)\r\n" % (v.seq, text))
        if lines:
            await self.send(b"".join(lines))
        if gone:
            sel.note_vanished()
        if modified:     # not changed: changed by others since the client's mod-sequence
            numbers = sorted(v.uid if uid else v.seq for v in modified)
            return f"[MODIFIED {condstore.uid_set(numbers)}] Conditional STORE failed"
        if gone or (sel.ghosts and any(sel.is_ghost(v.msg) for v in targets)):
            # The others are stored; EXPUNGE waits for a command that may send it (§7.4.1).
            return EXPUNGED_ALREADY
        return "STORE completed"

    @state("selected")
    async def cmd_COPY(self, tag, args, uid=False, move=False):
        verb = "MOVE" if move else "COPY"
        if len(args) != 2:
            raise bad(f"{verb} needs a sequence set and a mailbox name")
        sel = self.selected
        if move and sel.readonly:
            raise no("[READ-ONLY] The mailbox is open read-only (EXAMINE)")
        if move and sel.access is not None:
            access.require(sel.access, sel.rights, "te")
        if uid:
            await self.announce_changes()
        seqs = self.targets(args[0], uid)
        target = self.mailbox(args[1])
        dest_rights = self.need(target, "i")
        dest = await self.open_target(target)
        msgs = [sel.msgs[s - 1] for s in seqs]
        # flags the user may not set in the target are not copied (RFC 4314 §4)
        keep = None if {"s", "t", "w"} <= dest_rights else dest_rights

        def work():
            pairs, copies, sizes = [], [], []
            total = sum(m.size for m in msgs)
            learn_as = junklearn.copy_kind(self, sel.access, target) if msgs else None
            if not move or dest.maildir.path != sel.folder.maildir.path:
                dest.maildir.check_quota(total)
            if msgs:
                dest.keep_arrivals_recent()     # the copies go into cur/: recent all the same
            try:
                for m in msgs:
                    try:
                        d = sel.folder.copy_unchecked(
                            m, dest, None if keep is None else frozenset(rightsmod.storable_flags(m.flags, keep)))
                    except NotFound:
                        continue
                    pairs.append((m.uid, d.uid))
                    copies.append(d.path)
                    sizes.append(m.size)
            except BaseException:
                # RFC 3501 6.4.7: a failed COPY leaves the destination as it was
                for path in copies:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                raise
            if learn_as:
                junklearn.put_up(self, learn_as, zip(copies, sizes))
            return pairs, dest.uidvalidity()

        try:
            pairs, uidvalidity = await self.blocking(work)
        except QuotaExceeded:
            raise no(QUOTA_EXCEEDED) from None
        code = ""
        if pairs:
            code = f"[COPYUID {uidvalidity} {condstore.uid_set([p[0] for p in pairs])} {condstore.uid_set([p[1] for p in pairs])}] "
        if move:
            if code:
                await self.untagged(f"OK {code}Moved")
            moved = {p[0] for p in pairs}
            await self._expunge_seqs([s for s in seqs if sel.msgs[s - 1].uid in moved])
            return "MOVE completed"
        return f"{code}COPY completed"

    @state("selected")
    async def cmd_MOVE(self, tag, args, uid=False):
        return await self.cmd_COPY(tag, args, uid=uid, move=True)

    @state("selected")
    async def cmd_EXPUNGE(self, tag, args, uid_set=None):
        sel = self.selected
        if sel.readonly:
            raise no("[READ-ONLY] The mailbox is open read-only (EXAMINE)")
        if sel.access is not None:
            access.require(sel.access, sel.rights, "e")
        await self.announce_changes()
        allowed = None
        if uid_set is not None:
            allowed = set(sel.uids[i - 1] for i in sel.seqs_for(uid_set, uid=True))
        doomed_seqs = [i for i, m in enumerate(sel.msgs, 1) if "\\Deleted" in m.flags
                       and (allowed is None or m.uid in allowed)]
        await self._expunge_seqs(doomed_seqs)
        if sel.condstore:        # the client's HIGHESTMODSEQ after the expunges (RFC 7162 §3.2.10)
            return f"[HIGHESTMODSEQ {sel.highestmodseq}] EXPUNGE completed"
        return "EXPUNGE completed"

    async def _expunge_seqs(self, seqs: list[int]) -> None:
        sel = self.selected
        if not seqs:
            return
        doomed = [sel.msgs[i - 1] for i in seqs]

        def work():
            sel.folder.expunge(doomed)
            if sel.condstore:     # logged now for VANISHED (EARLIER), not at the next look
                with sel.folder.modseqs() as ms:
                    return ms.record_expunged(m.uid for m in doomed)
            return 0
        highest = await self.blocking(work)
        sel.own_lists()  # changed in place below
        out = sel.expunge_lines(sorted(seqs, reverse=True))
        if sel.condstore:
            sel.note_modseqs(highest, {})
        for seq in sorted(seqs, reverse=True):
            uid = sel.msgs[seq - 1].uid
            del sel.msgs[seq - 1]
            del sel.uids[seq - 1]
            sel.recent.discard(uid)
        await self.send(b"".join(out))

    @state("selected")
    async def cmd_CLOSE(self, tag, args):
        sel = self.selected
        self.selected = None
        if not sel.readonly and "e" in sel.rights:     # without e, CLOSE only closes (RFC 4314 §4)
            doomed = [m for m in sel.msgs if "\\Deleted" in m.flags]
            if doomed:
                await self.blocking(sel.folder.expunge, doomed)
        return "CLOSE completed"

    @state("selected")
    async def cmd_UNSELECT(self, tag, args):
        self.selected = None
        return "UNSELECT completed"


def _check_store_rights(sel, op: str, flags: set[str]) -> None:
    """STORE needs s for \\Seen, t for \\Deleted, w for any other flag; replacing all
    flags (FLAGS) touches every kind, so it needs all three."""
    if sel.access is None:
        return
    need = {"s", "t", "w"} if op == "FLAGS" else {rightsmod.flag_right(f) for f in flags}
    access.require(sel.access, sel.rights, "".join(sorted(need)))


def _stored(op: str, old: frozenset[str], flags: set[str]) -> frozenset[str]:
    """What a STORE makes of flags the client knew as old, were nobody else changing them."""
    if op == "FLAGS":
        return frozenset(flags)
    return old | flags if op == "+FLAGS" else old - flags

