"""The IMAP commands (RFC 3501 §6 and the extensions in CAPABILITY), as a mixin of
ImapSession. A handler returns the text of its tagged OK, or raises CommandError /
ParseError / MailError for NO and BAD. Each handler's `state` says when it is allowed.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import time

from .. import maildir as store
from .. import memtrim, mutf7
from ..errors import AlreadyExists, InvalidInput, NotFound, QuotaExceeded
from . import bigfetch, fetch as fetchmod
from . import search as searchmod
from .parser import Atom, as_atom, as_text, parse_sequence_set
from .response import astring
from . import headercache
from . import index as indexmod
from . import listing
from .mime import to_crlf
from .msgview import View
from .selected import Selected, flag_list, read_message

SYSTEM_FLAGS = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
FETCH_BATCH = 200
IDLE_POLL_S = 1.0
RESCAN_THROTTLE_S = 0.25
HOLD_BYTES = 256 * 1024  # a last FETCH batch this small is written together with the tagged reply
INLINE_MESSAGES = 4     # a FETCH of at most this many whole messages may read them in the event loop
INLINE_BYTES = 128 * 1024  # ...each this small: BODYSTRUCTURE of 4 x 40 MB held the loop for 2 s
RECENT = frozenset({"\\Recent"})
QUOTA_EXCEEDED = "[OVERQUOTA] Quota exceeded (mailbox for user is full)"   # Dovecot's text
INLINE_SEARCH = 20_000  # SEARCH without content keys: more messages x keys run in a worker thread


def state(name):
    def mark(fn):
        fn.state = name
        return fn
    return mark


def _errors():
    from .session import bad, no
    return bad, no


def _read_small_if_cached(folder, msg) -> bytes:
    return folder.read_if_cached(msg, max_bytes=INLINE_BYTES)


class Commands:
    # -- any state -----------------------------------------------------------------
    @state("any")
    async def cmd_CAPABILITY(self, tag, args):
        await self.untagged("CAPABILITY " + " ".join(self.capabilities()))
        return "Capability completed"

    @state("any")
    async def cmd_NOOP(self, tag, args):
        await self.announce_changes()
        return "NOOP completed"

    @state("any")
    async def cmd_LOGOUT(self, tag, args):
        await self.send(b"* BYE Logging out\r\n")
        await self.send(f"{tag} OK Logout completed\r\n".encode())
        self.closing = True
        return None

    @state("any")
    async def cmd_ID(self, tag, args):
        await self.untagged('ID ("name" "mailctl" "vendor" "mailctl")')
        return "ID completed"

    # -- authenticated ---------------------------------------------------------------------
    @state("auth")
    async def cmd_ENABLE(self, tag, args):
        await self.untagged("ENABLED")
        return "ENABLE completed"

    @state("auth")
    async def cmd_NAMESPACE(self, tag, args):
        await self.untagged('NAMESPACE (("" "/")) NIL NIL')
        return "NAMESPACE completed"

    def folder_name(self, token) -> str:
        """A mailbox argument (modified UTF-7 on the wire) as a checked Unicode name."""
        text = token if type(token) is str else as_text(token, "mailbox name")
        if text.upper() == "INBOX":
            return "INBOX"
        try:
            name = mutf7.decode(text)
        except InvalidInput as e:
            raise InvalidInput(f"Invalid mailbox name: {e}") from None
        return store.canonical_name(name)

    async def blocking(self, fn, *args):
        return await self.runtime.run_blocking(fn, *args)

    async def open_folder(self, name: str, trycreate: bool = False) -> store.Folder:
        try:
            return await self.blocking(self.maildir.folder, name)
        except NotFound:
            bad, no = _errors()
            raise no(("[TRYCREATE] " if trycreate else "[NONEXISTENT] ") + f"Mailbox {name!r} does not exist") from None

    @state("auth")
    async def cmd_SELECT(self, tag, args, readonly=False):
        bad, no = _errors()
        if len(args) != 1:
            raise bad("SELECT needs one mailbox name")
        self.selected = None
        name = self.folder_name(args[0])
        folder = await self.open_folder(name)
        sel = Selected(folder, readonly)

        def load():  # one trip to the thread pool
            sel.load()
            return sel.uidnext(), sorted(store._read_keywords(folder.path).values())
        uidnext, keywords = await self.blocking(load)
        flags = SYSTEM_FLAGS + ["$Forwarded"] + keywords
        await self.untagged(f"FLAGS ({' '.join(flags)})")
        perm = "" if readonly else " ".join(flags + ["\\*"])
        await self.untagged(f"OK [PERMANENTFLAGS ({perm})] Flags permitted")
        await self.untagged(f"{len(sel.msgs)} EXISTS")
        await self.untagged(f"{sel.recent_count()} RECENT")
        first_unseen = sel.first_unseen()
        if first_unseen:
            await self.untagged(f"OK [UNSEEN {first_unseen}] First unseen")
        await self.untagged(f"OK [UIDVALIDITY {sel.uidvalidity}] UIDs valid")
        await self.untagged(f"OK [UIDNEXT {uidnext}] Predicted next UID")
        self.selected = sel
        return f"[{'READ-ONLY' if readonly else 'READ-WRITE'}] {'EXAMINE' if readonly else 'SELECT'} completed"

    @state("auth")
    async def cmd_EXAMINE(self, tag, args):
        return await self.cmd_SELECT(tag, args, readonly=True)

    @state("auth")
    async def cmd_CREATE(self, tag, args):
        bad, no = _errors()
        if len(args) != 1:
            raise bad("CREATE needs one mailbox name")
        text = as_text(args[0], "mailbox name")
        name = self.folder_name(text.rstrip("/") or text)
        if name == "INBOX":
            raise no("[ALREADYEXISTS] INBOX always exists")
        try:
            await self.blocking(self.maildir.create_folder, name)
        except AlreadyExists:
            raise no(f"[ALREADYEXISTS] Mailbox {name!r} already exists") from None
        return "CREATE completed"

    @state("auth")
    async def cmd_DELETE(self, tag, args):
        bad, no = _errors()
        if len(args) != 1:
            raise bad("DELETE needs one mailbox name")
        name = self.folder_name(args[0])
        if self.selected is not None and self.selected.folder.name == name:
            self.selected = None
        try:
            await self.blocking(self.maildir.delete_folder, name)
        except NotFound:
            raise no(f"[NONEXISTENT] Mailbox {name!r} does not exist") from None
        return "DELETE completed"

    @state("auth")
    async def cmd_RENAME(self, tag, args):
        bad, no = _errors()
        if len(args) != 2:
            raise bad("RENAME needs two mailbox names")
        old, new = self.folder_name(args[0]), self.folder_name(args[1])
        try:
            await self.blocking(self.maildir.rename_folder, old, new)
        except NotFound:
            raise no(f"[NONEXISTENT] Mailbox {old!r} does not exist") from None
        except AlreadyExists:
            raise no(f"[ALREADYEXISTS] Mailbox {new!r} already exists") from None
        return "RENAME completed"

    @state("auth")
    async def cmd_SUBSCRIBE(self, tag, args):
        bad, no = _errors()
        if len(args) != 1:
            raise bad("SUBSCRIBE needs one mailbox name")
        await self.blocking(self.maildir.subscribe, self.folder_name(args[0]))
        return "SUBSCRIBE completed"

    @state("auth")
    async def cmd_UNSUBSCRIBE(self, tag, args):
        bad, no = _errors()
        if len(args) != 1:
            raise bad("UNSUBSCRIBE needs one mailbox name")
        await self.blocking(self.maildir.unsubscribe, self.folder_name(args[0]))
        return "UNSUBSCRIBE completed"

    @state("auth")
    async def cmd_LIST(self, tag, args, lsub=False):
        bad, no = _errors()
        verb = "LSUB" if lsub else "LIST"
        args = list(args)
        if not lsub:
            # LIST-EXTENDED forms (RFC 5258/6154) that clients send: selection options
            # first, RETURN options last. Special-use and subscription attributes are
            # always given, so the options need no handling beyond SUBSCRIBED.
            selection = args.pop(0) if args and isinstance(args[0], list) else []
            if len(args) == 4 and isinstance(args[2], Atom) and args[2].upper() == "RETURN":
                args = args[:2]
            if any(isinstance(o, Atom) and o.upper() == "SUBSCRIBED" for o in selection):
                lsub = True
        if len(args) != 2:
            raise bad(f"{verb} needs a reference and a mailbox pattern")
        ref = as_text(args[0], "reference")
        pattern = as_text(args[1], "mailbox pattern")
        if not pattern:
            if not lsub:
                await self.untagged('LIST (\\Noselect) "/" ""')
            return f"{verb} completed"
        matcher = listing.Pattern(ref + pattern)

        def work():  # folders, subscriptions and matching: off the event loop
            infos = self.maildir.list_folders()
            subscribed = set(self.maildir.subscriptions())
            return listing.listing(verb, matcher, infos, subscribed, lsub)
        await self.send(await self.blocking(work))
        return f"{verb} completed"

    @state("auth")
    async def cmd_LSUB(self, tag, args):
        return await self.cmd_LIST(tag, args, lsub=True)

    @state("auth")
    async def cmd_STATUS(self, tag, args):
        bad, no = _errors()
        if len(args) != 2 or not isinstance(args[1], list):
            raise bad("STATUS needs a mailbox name and a list of items")
        name = self.folder_name(args[0])
        items = [as_atom(i, "status item").upper() for i in args[1]]
        allowed = {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE"}
        for i in items:
            if i not in allowed:
                raise bad(f"Unknown STATUS item {i[:20]}")
        folder = await self.open_folder(name)
        st = await self.blocking(folder.status)
        if self.selected is not None and self.selected.folder.name == name:
            st["recent"] = self.selected.recent_count()
        out = " ".join(f"{i} {st[i.lower()]}" for i in items)
        await self.send(b"* STATUS " + astring(mutf7.encode(name)) + f" ({out})\r\n".encode())
        return "STATUS completed"

    @state("auth")
    async def cmd_APPEND(self, tag, args):
        bad, no = _errors()
        if len(args) < 2:
            raise bad("APPEND needs a mailbox and a message literal")
        name = self.folder_name(args[0])
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
            folder = await self.open_folder(name, trycreate=True)
            try:
                if spool:
                    delivered = await self.blocking(self._append_spooled, name, spool, flags, date)
                else:
                    delivered = await self.blocking(self._append, name, data.replace(b"\r\n", b"\n"),
                                                    flags, date)
            except QuotaExceeded:
                raise no(QUOTA_EXCEEDED) from None
        finally:
            if spool:
                spool.discard()               # staged or not, no file stays behind in tmp/
        uidvalidity = await self.blocking(folder.uidvalidity)
        await self.announce_changes()
        return f"[APPENDUID {uidvalidity} {delivered.uid}] APPEND completed"

    def _append(self, name, data, flags, date):
        return self.maildir.deliver(data, name, flags, date)

    def _append_spooled(self, name, spool, flags, date):
        staged = self.maildir.stage_file(spool.path, spool.size, spool.vsize, name, flags, date)
        try:
            return staged.commit()
        except BaseException:
            staged.abort()
            raise

    @state("auth")
    async def cmd_IDLE(self, tag, args):
        await self.send(b"+ idling\r\n")
        deadline = asyncio.get_running_loop().time() + self.runtime.settings.mailbox.idle_timeout_s
        # readline(): a line over the limit is read to its end and answered BAD, as outside IDLE
        reader_task = asyncio.ensure_future(self.readline())
        try:
            while True:
                await self.announce_changes()
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    await self.send(b"* BYE Autologout; idle for too long\r\n")
                    self.closing = True
                    return None
                done, _ = await asyncio.wait({reader_task}, timeout=min(IDLE_POLL_S, left))
                if self.runtime.stopping.is_set():
                    await self.send(b"* BYE Server shutting down\r\n")
                    self.closing = True
                    return None
                if done:
                    break
        finally:
            if not reader_task.done():
                reader_task.cancel()
        try:
            line = reader_task.result()
        except ConnectionError:
            line = None
        if line is None:
            self.closing = True
            return None
        if line.strip().upper() != b"DONE":
            bad, no = _errors()
            raise bad("Expected DONE to end IDLE")
        return "IDLE terminated"

    # -- QUOTA (RFC 2087) --
    async def _quota(self):
        used, _ = await self.blocking(self.maildir.quota_usage)
        limit = self.account.quota_mb * 1024 * 1024 if self.account.quota_mb else \
            await self.blocking(self.maildir.quota_limit)
        return used, limit

    async def _send_quota(self):
        used, limit = await self._quota()
        if limit:
            await self.untagged(f'QUOTA "" (STORAGE {used // 1024} {limit // 1024})')
        else:
            await self.untagged('QUOTA "" ()')

    @state("auth")
    async def cmd_GETQUOTAROOT(self, tag, args):
        bad, no = _errors()
        if len(args) != 1:
            raise bad("GETQUOTAROOT needs a mailbox name")
        name = self.folder_name(args[0])
        await self.open_folder(name)
        await self.send(b"* QUOTAROOT " + astring(mutf7.encode(name)) + b' ""\r\n')
        await self._send_quota()
        return "GETQUOTAROOT completed"

    @state("auth")
    async def cmd_GETQUOTA(self, tag, args):
        bad, no = _errors()
        if len(args) != 1:
            raise bad("GETQUOTA needs a quota root")
        if as_text(args[0], "quota root") != "":
            raise no("[NONEXISTENT] No such quota root (the only one is \"\")")
        await self._send_quota()
        return "GETQUOTA completed"

    @state("auth")
    async def cmd_SETQUOTA(self, tag, args):
        bad, no = _errors()
        raise no("[NOPERM] Quotas are set by the administrator (mailctl account)")

    # -- selected ----------------------------------------------------------------------------
    async def announce_changes(self, throttle: bool = False) -> None:
        """Send what other sessions and deliveries changed. With throttle (UID FETCH and
        UID SEARCH, where updates are optional), skip when we looked moments ago."""
        sel = self.selected
        if sel is None:
            return
        now = time.monotonic()
        if throttle and now - getattr(self, "_last_scan", 0.0) < RESCAN_THROTTLE_S:
            return
        self._last_scan = now
        scanned = await self.blocking(sel.scan)
        if self.selected is not sel:
            return
        lines = sel.apply(scanned)
        if lines:
            await self.send(b"".join(lines))

    @state("selected")
    async def cmd_CHECK(self, tag, args):
        await self.announce_changes()
        return "CHECK completed"

    @state("selected")
    async def cmd_CLOSE(self, tag, args):
        sel = self.selected
        self.selected = None
        if not sel.readonly:
            doomed = [m for m in sel.msgs if "\\Deleted" in m.flags]
            if doomed:
                await self.blocking(sel.folder.expunge, doomed)
        return "CLOSE completed"

    @state("selected")
    async def cmd_UNSELECT(self, tag, args):
        self.selected = None
        return "UNSELECT completed"

    @state("selected")
    async def cmd_EXPUNGE(self, tag, args, uid_set=None):
        bad, no = _errors()
        sel = self.selected
        if sel.readonly:
            raise no("[READ-ONLY] The mailbox is open read-only (EXAMINE)")
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

    def _targets(self, token, uid: bool) -> list[int]:
        bad, no = _errors()
        text = as_atom(token, "sequence set")
        ranges = parse_sequence_set(text)
        sel = self.selected
        if not uid:
            count = len(sel.msgs)
            for a, b in ranges:
                for v in (a, b):
                    if v is not None and v > count:
                        raise bad(f"Invalid message sequence number {v} (the mailbox has {count})")
        return sel.seqs_for(ranges, uid)

    @state("selected")
    async def cmd_SEARCH(self, tag, args, uid=False):
        bad, no = _errors()
        args = list(args)
        if len(args) >= 2 and isinstance(args[0], Atom) and args[0].upper() == "CHARSET":
            charset = as_text(args[1], "charset").upper()
            if charset not in searchmod.SUPPORTED_CHARSETS:
                raise no("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset " + charset[:30])
            args = args[2:]
        nodes = searchmod.parse(args)
        sel = self.selected
        deadline = self.deadline
        if uid:
            await self.announce_changes(throttle=True)
        if len(nodes) == 1 and nodes[0][0] == "HEADER" and nodes[0][1] in indexmod.INDEXED \
                and "\0" not in nodes[0][2]:
            # One header key (SUBJECT x, FROM y ...): straight over the index's decoded texts.
            _, name, needle = nodes[0]
            msgs = list(sel.msgs)

            def run_column():
                entries = indexmod.lookup(sel.folder, msgs, complete=True)
                col = indexmod.columns(sel.folder, {name}, entries)[name]
                out = []
                for seq, m in enumerate(searchmod.within(msgs, deadline), 1):
                    text = col.get(m.base)  # None: no such field, or the message is gone
                    if text is not None and (not needle or needle in text):
                        out.append(m.uid if uid else seq)
                return out
            numbers = await self.blocking(run_column)
            await self.send(("* SEARCH" + "".join(f" {n}" for n in numbers) + "\r\n").encode())
            return "SEARCH completed"
        searcher = searchmod.Searcher(nodes, len(sel.msgs), sel.uids[-1] if sel.uids else 0)
        views = [View.of(sel, i, sel.folder.read) for i in range(1, len(sel.msgs) + 1)]
        if searcher.needs_content():
            names = searchmod.header_names(("AND", nodes)) & indexmod.INDEXED

            def run():
                if names:
                    entries = indexmod.lookup(sel.folder, [v.msg for v in views], complete=True)
                    columns = indexmod.columns(sel.folder, names - {"date"}, entries)
                    for v in views:
                        v._entry = entries.get(v.msg.base)
                        v._columns = columns
                out = []
                for v in searchmod.within(views, deadline):
                    try:
                        if searcher.matches(v):
                            out.append(v)
                    except NotFound:
                        continue
                return out
            found = await self.blocking(run)
        elif len(views) * searchmod.size(("AND", nodes)) <= INLINE_SEARCH:
            found = [v for v in views if searcher.matches(v)]
        else:  # flags, sizes, dates of a large folder: still off the event loop
            found = await self.blocking(
                lambda: [v for v in searchmod.within(views, deadline) if searcher.matches(v)])
        numbers = [str(v.uid if uid else v.seq) for v in found]
        await self.send(("* SEARCH" + "".join(" " + n for n in numbers) + "\r\n").encode())
        return "SEARCH completed"

    @state("selected")
    async def cmd_FETCH(self, tag, args, uid=False):
        bad, no = _errors()
        if len(args) != 2:
            raise bad("FETCH needs a sequence set and fetch items")
        sel = self.selected
        if uid:
            await self.announce_changes(throttle=True)
        seqs = self._targets(args[0], uid)
        items = fetchmod.parse_items(args[1])
        if uid and not any(i.name == "UID" for i in items):
            items.insert(0, fetchmod.FetchItem("UID"))
        needs_content = any(i.needs_content for i in items)
        header_only = all(i.header_only for i in items if i.needs_content)
        sets_seen = any(i.sets_seen for i in items) and not sel.readonly
        wants_flags = any(i.name == "FLAGS" for i in items)
        if all(i.name in ("UID", "FLAGS") for i in items):
            # The sync clients' favourite (UID FETCH 1:* (FLAGS)): no disk, no threads.
            names = [i.name for i in items]
            uid_flags = names == ["UID", "FLAGS"]
            with_recent: dict[frozenset, str] = {}  # flag set -> its text with \Recent
            msgs = sel.msgs
            out = []
            for n, seq in enumerate(seqs, 1):
                m = msgs[seq - 1]
                if sel.is_recent(m):
                    text = with_recent.get(m.flags)
                    if text is None:
                        text = with_recent[m.flags] = flag_list(m.flags | RECENT)
                else:
                    text = flag_list(m.flags)
                if uid_flags:
                    out.append(f"* {seq} FETCH (UID {m.uid} FLAGS {text})\r\n")
                else:
                    parts = [f"UID {m.uid}" if name == "UID" else "FLAGS " + text for name in names]
                    out.append(f"* {seq} FETCH ({' '.join(parts)})\r\n")
                if n % 5000 == 0:
                    await self.send("".join(out).encode())
                    out = []
            await self.send("".join(out).encode())
            return "FETCH completed"
        # ENVELOPE and the usual header fields come from the folder's index.
        indexed = needs_content and all(
            i.name == "ENVELOPE" or (i.kind == "BODY" and not i.numbers and i.text == "HEADER.FIELDS"
                                     and indexmod.covers(i.fields))
            for i in items if i.needs_content)
        wants_envelope = any(i.name == "ENVELOPE" for i in items)
        whole = bigfetch.whole_item(items)      # a large message asked for whole is streamed
        missing = False
        step = FETCH_BATCH * 5 if indexed else FETCH_BATCH if needs_content else FETCH_BATCH * 10
        inline = (len(seqs) <= INLINE_MESSAGES and needs_content and not header_only and not indexed
                  and not sets_seen and (all(sel.msgs[s - 1].sizes_known for s in seqs)
                                         or not any(i.name == "RFC822.SIZE" for i in items)))
        for start in range(0, len(seqs), step):
            batch = [View.of(sel, s, sel.folder.read) for s in seqs[start:start + step]]

            def work(batch=batch, read=read_message):
                out, changed, gone = [], [], False
                entries = indexmod.lookup(sel.folder, [v.msg for v in batch], envelope=wants_envelope) \
                    if indexed else None
                for v in batch:
                    try:
                        msg = v.msg
                        entry = None
                        if indexed:
                            entry = entries.get(msg.base)
                            if entry is None:
                                raise NotFound(f"message UID {msg.uid} no longer exists")
                        extra = []
                        if sets_seen and "\\Seen" not in msg.flags:
                            msg = sel.folder.set_flags(msg, msg.flags | {"\\Seen"})
                            changed.append(msg)
                            v.msg = msg
                            if not wants_flags:
                                extra = [fetchmod.FetchItem("FLAGS")]
                        if not needs_content:
                            data = None
                        elif entry is not None:
                            data = entry.fields
                        elif header_only:
                            data = headercache.header(sel.folder, msg)
                        elif whole is not None and msg.size >= bigfetch.STREAM_FROM:
                            flags_text = flag_list(v.flags) if wants_flags or extra else None
                            out.append(bigfetch.streamed(v, items + extra, whole, flags_text, sel.folder, msg))
                            continue
                        else:
                            data = to_crlf(read(sel.folder, msg))
                            memtrim.note(len(data))
                        flags_text = flag_list(v.flags) if wants_flags or extra else None
                        body = fetchmod.render(v, items + extra, data, flags_text,
                                               entry.envelope if entry is not None else None, entry)
                        out.append(b"* %d FETCH " % v.seq + body + b"\r\n")
                    except NotFound:
                        gone = True
                    except fetchmod.UnknownCTE:
                        out.append(None)
                return out, changed, gone

            # A few small whole messages the kernel holds in memory: read here, as a hop to
            # a worker thread costs more than the read (1000 single-message FETCHes).
            try:
                done = work(read=_read_small_if_cached) if inline else None
            except BlockingIOError:
                done = None
            lines, changed, gone = done or await self.blocking(work)
            missing = missing or gone
            for m in changed:
                sel.replace(m)
            if any(line is None for line in lines):
                await self.send(b"".join(x for x in lines if x is not None))
                raise no("[UNKNOWN-CTE] Cannot decode the content transfer encoding of a part")
            if any(isinstance(line, bigfetch.Streamed) for line in lines):
                await bigfetch.send_all(self, lines)
                continue
            data = b"".join(lines)
            if start + step >= len(seqs) and len(data) <= HOLD_BYTES:
                self.hold(data)            # the last batch: out with the tagged reply
            else:
                await self.send(data)
        if len(seqs) >= store.SAVE_SIZES_BATCH and any(i.name == "RFC822.SIZE" for i in items):
            await self.blocking(sel.folder.save_measured_sizes)
        if missing:
            raise no("[EXPUNGEISSUED] Some of the requested messages no longer exist")
        return "FETCH completed"

    @state("selected")
    async def cmd_STORE(self, tag, args, uid=False):
        bad, no = _errors()
        if len(args) != 3:
            raise bad("STORE needs a sequence set, an item and flags")
        sel = self.selected
        if sel.readonly:
            raise no("[READ-ONLY] The mailbox is open read-only (EXAMINE)")
        if uid:
            await self.announce_changes()
        seqs = self._targets(args[0], uid)
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
            flags = set(store._normalize_flags(flags))
        except InvalidInput as e:
            raise bad(str(e)) from None
        targets = [View.of(sel, s, None) for s in seqs]

        def work():
            out, changed, gone = [], [], False
            result: dict[frozenset, frozenset] = {}  # a folder has few distinct flag sets
            for v in targets:
                msg = v.msg
                new = result.get(msg.flags)
                if new is None:
                    if op == "FLAGS":
                        new = frozenset(flags)
                    elif op == "+FLAGS":
                        new = msg.flags | flags
                    else:
                        new = msg.flags - flags
                    result[msg.flags] = new
                if new != msg.flags:
                    try:
                        msg = sel.folder.set_flags(msg, new)
                    except NotFound:
                        gone = True
                        continue
                    changed.append(msg)
                    v.msg = msg
                out.append(v)
            return out, changed, gone

        views, changed, gone = await self.blocking(work)
        for m in changed:
            sel.replace(m)
        if not silent:
            lines = []
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
            await self.send(b"".join(lines))
        if gone:
            raise no("[EXPUNGEISSUED] Some of the messages no longer exist")
        return "STORE completed"

    @state("selected")
    async def cmd_COPY(self, tag, args, uid=False, move=False):
        bad, no = _errors()
        verb = "MOVE" if move else "COPY"
        if len(args) != 2:
            raise bad(f"{verb} needs a sequence set and a mailbox name")
        sel = self.selected
        if move and sel.readonly:
            raise no("[READ-ONLY] The mailbox is open read-only (EXAMINE)")
        if uid:
            await self.announce_changes()
        seqs = self._targets(args[0], uid)
        name = self.folder_name(args[1])
        dest = await self.open_folder(name, trycreate=True)
        msgs = [sel.msgs[s - 1] for s in seqs]

        def work():
            pairs, copies = [], []
            total = sum(m.size for m in msgs)
            if not move:
                self.maildir.check_quota(total)
            try:
                for m in msgs:
                    try:
                        d = sel.folder._copy(m, dest)
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
    async def cmd_UID(self, tag, args):
        bad, no = _errors()
        if not args or not isinstance(args[0], Atom):
            raise bad("UID needs a command")
        sub = args[0].upper()
        rest = args[1:]
        if sub == "FETCH":
            return await self.cmd_FETCH(tag, rest, uid=True)
        if sub == "SEARCH":
            return await self.cmd_SEARCH(tag, rest, uid=True)
        if sub == "STORE":
            return await self.cmd_STORE(tag, rest, uid=True)
        if sub == "COPY":
            return await self.cmd_COPY(tag, rest, uid=True)
        if sub == "MOVE":
            return await self.cmd_MOVE(tag, rest, uid=True)
        if sub == "EXPUNGE":
            if len(rest) != 1:
                raise bad("UID EXPUNGE needs a UID set")
            return await self.cmd_EXPUNGE(tag, [], uid_set=parse_sequence_set(as_atom(rest[0], "UID set")))
        raise bad(f"Unknown UID command {sub[:20]}")


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
