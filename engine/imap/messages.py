"""The IMAP commands on the messages of a mailbox, other than FETCH and SEARCH: APPEND,
STORE, COPY and MOVE, EXPUNGE (and UID EXPUNGE), CLOSE and UNSELECT.

CONDSTORE's STORE (UNCHANGEDSINCE, MODIFIED) and QRESYNC's VANISHED replies to EXPUNGE
go here.
"""
from __future__ import annotations

import contextlib
import os

from .. import maildir as store, memtrim, nofollow
from ..acl import rights as rightsmod
from ..errors import InvalidInput, NotFound, QuotaExceeded
from . import access, fetch as fetchmod, transfer
from .commandbase import CommandBase, state
from .errors import bad, no
from .msgview import View
from .parser import Atom, Literal8, as_atom, as_text
from .selected import flag_list

QUOTA_EXCEEDED = "[OVERQUOTA] Quota exceeded (mailbox for user is full)"   # Dovecot's text
EXPUNGED_ALREADY = "[EXPUNGEISSUED] Some messages were already expunged"  # Dovecot's FETCH text
_CHANGE_KINDS = {"FLAGS": "replace", "+FLAGS": "add", "-FLAGS": "remove"}   # Folder.flag_change's words


class MessageCommands(CommandBase):
    @state("auth")
    async def cmd_APPEND(self, tag, args):
        if len(args) < 2:
            raise bad("APPEND needs a mailbox and a message literal")
        box = self.mailbox(args[0])
        name = box.name
        rest = list(args[1:])
        flags: list[str] = []
        date = None
        if rest and isinstance(rest[0], list):
            flags = [as_atom(f, "flag") for f in rest.pop(0)]
        if len(rest) == 2:
            date = fetchmod.parse_internaldate(as_text(rest.pop(0), "date-time"))
        if len(rest) != 1 or not isinstance(rest[0], bytes) or isinstance(rest[0], Atom):
            raise bad("APPEND: the message must be a literal")
        data = rest[0]
        spool = None if data else self.take_spool()    # a large message arrived in tmp/
        try:
            size = spool.size if spool else len(data)
            if not size:
                raise no("Cannot save an empty message")
            limit = self.append_limit()
            if not limit or size > limit:
                raise no(f"[TOOBIG] Message larger than the APPEND limit of {limit} bytes")
            flags = [f for f in flags if f.lower() != "\\recent"]
            flags = rightsmod.storable_flags(flags, self.need(box, "i"))
            folder = await self._open_target(box)
            try:
                if spool:
                    delivered = await self.blocking(self._append_spooled, folder, name, spool, flags, date,
                                                    isinstance(data, Literal8))
                else:
                    delivered = await self.blocking(self._append, folder, name, data, flags, date)
            except QuotaExceeded:
                raise no(QUOTA_EXCEEDED) from None
        finally:
            if spool:
                spool.discard()               # staged or not, no file stays behind in tmp/
        uidvalidity = await self.blocking(folder.uidvalidity)
        await self.announce_changes()
        return f"[APPENDUID {uidvalidity} {delivered.uid}] APPEND completed"

    def _append(self, folder, name, data, flags, date):
        if flags:       # into cur/, not new/: recent all the same
            folder.keep_arrivals_recent()
        if isinstance(data, Literal8):      # binary parts go in base64: a Maildir file holds lines
            data = transfer.storable(data)
        return folder.maildir.deliver(data.replace(b"\r\n", b"\n"), name, flags, date)

    def _append_spooled(self, folder, name, spool, flags, date, literal8=False):
        if literal8:     # kept exact in the spool: stored as a small literal8 is (in memory, rare)
            data = nofollow.read_bytes(spool.path)
            memtrim.note(len(data))
            return self._append(folder, name, Literal8(data), flags, date)
        if flags:
            folder.keep_arrivals_recent()
        staged = folder.maildir.stage_file(spool.path, spool.size, spool.vsize, name, flags, date)
        try:
            return staged.commit()
        except BaseException:
            staged.abort()
            raise

    async def _open_target(self, box):
        """The folder an APPEND or COPY writes into; TRYCREATE when it is missing."""
        try:
            return await self.blocking(box.maildir.folder, box.name)
        except NotFound:
            raise no(f"[TRYCREATE] Mailbox {box.wire!r} does not exist") from None

    @state("selected")
    async def cmd_STORE(self, tag, args, uid=False):
        if len(args) != 3:
            raise bad("STORE needs a sequence set, an item and flags")
        sel = self.selected
        if sel.readonly:
            raise no("[READ-ONLY] The mailbox is open read-only (EXAMINE)")
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

        def work():
            # Against the flags each file has on disk now (not our copy): another
            # session's change made meanwhile is kept, and shows in our reply.
            change = folder.flag_change(**{_CHANGE_KINDS[op]: flags})
            out, changed, gone = [], [], False
            for v in targets:
                msg = v.msg
                if sel.is_ghost(msg):
                    continue            # expunged elsewhere: nothing to store, no FETCH for it
                try:
                    msg = folder.apply_flag_change(msg, change)
                except NotFound:
                    gone = True
                    continue
                if msg is not v.msg:
                    changed.append(msg)
                    v.msg = msg
                out.append(v)
            # A keyword new to the client (ours, or another session's on the same message)
            # comes in FLAGS before the FETCH that shows it.
            return out, changed, gone, sel.read_keywords() if sel.unannounced(m.flags for m in changed) else None

        known = {v.uid: v.msg.flags for v in targets} if silent else None   # the client's copy
        views, changed, gone, keywords = await self.blocking(work)
        for m in changed:
            sel.replace(m)
        lines = sel.keyword_updates(keywords) if keywords is not None else []
        if known is not None:
            # Only what the client cannot know: flags another session set or cleared.
            views = [v for v in views if v.msg.flags != _stored(op, known[v.uid], flags)]
        texts: dict[tuple, bytes] = {}  # (flags, recent) -> encoded flag list
        for v in views:
            key = (v.msg.flags, v.recent)
            text = texts.get(key)
            if text is None:
                text = texts[key] = flag_list(v.flags).encode()
            if uid:
                lines.append(b"* %d FETCH (UID %d FLAGS %s)\r\n" % (v.seq, v.uid, text))
            else:
                lines.append(b"* %d FETCH (FLAGS %s)\r\n" % (v.seq, text))
        if lines:
            await self.send(b"".join(lines))
        if gone:
            sel.note_vanished()
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
        dest = await self._open_target(target)
        msgs = [sel.msgs[s - 1] for s in seqs]
        # flags the user may not set in the target are not copied (RFC 4314 §4)
        keep = None if {"s", "t", "w"} <= dest_rights else dest_rights

        def work():
            pairs, copies = [], []
            total = sum(m.size for m in msgs)
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
            except BaseException:
                # RFC 3501 6.4.7: a failed COPY leaves the destination as it was
                for path in copies:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                raise
            return pairs, dest.uidvalidity()

        try:
            pairs, uidvalidity = await self.blocking(work)
        except QuotaExceeded:
            raise no(QUOTA_EXCEEDED) from None
        code = ""
        if pairs:
            code = f"[COPYUID {uidvalidity} {_uid_set([p[0] for p in pairs])} {_uid_set([p[1] for p in pairs])}] "
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
        return "EXPUNGE completed"

    async def _expunge_seqs(self, seqs: list[int]) -> None:
        sel = self.selected
        if not seqs:
            return
        doomed = [sel.msgs[i - 1] for i in seqs]
        await self.blocking(sel.folder.expunge, doomed)
        sel.own_lists()  # changed in place below
        out = []
        for seq in sorted(seqs, reverse=True):
            out.append(b"* %d EXPUNGE\r\n" % seq)
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


def _uid_set(uids: list[int]) -> str:
    """A compact UID set: 1:3,7,9:10."""
    parts = []
    start = prev = None
    for u in uids:
        if start is None:
            start = prev = u
        elif u == prev + 1:
            prev = u
        else:
            parts.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = u
    if start is not None:
        parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)
