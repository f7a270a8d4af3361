"""FETCH (and UID FETCH): which messages, in what batches, from where (the flags alone,
the folder's index, the header cache, the file, or streamed from it when large), and
setting \\Seen. The items themselves are parsed and rendered by fetch.py; large whole
messages are streamed by bigfetch.py.

CONDSTORE's FETCH additions (MODSEQ, CHANGEDSINCE) and QRESYNC's VANISHED go here.
"""
from __future__ import annotations

import asyncio

from .. import maildir as store
from .. import memtrim
from ..errors import NotFound
from . import bigfetch, fetch as fetchmod, preview, structures
from .transfer import UnknownCTE
from . import headercache
from . import index as indexmod
from .commandbase import CommandBase, state
from .errors import bad, no
from . import condstore
from .parser import Atom, as_atom, parse_sequence_set
from .msgview import View
from ..maildir import read_message, to_crlf
from .selected import flag_list

FETCH_BATCH = 200
FIRST_BATCH = 25        # messages whose content goes out before the next batch is made
AHEAD_BYTES = 16 << 20  # a batch larger than this is sent before the next is read (memory)
HOLD_BYTES = 256 * 1024  # a last FETCH batch this small is written together with the tagged reply
INLINE_MESSAGES = 4     # a FETCH of at most this many whole messages may read them in the event loop
INLINE_BYTES = 128 * 1024  # ...each this small: BODYSTRUCTURE of 4 x 40 MB held the loop for 2 s
RECENT = frozenset({"\\Recent"})
GHOST, VANISHED = 1, 2  # a message known gone (Selected.ghosts), one found gone now
SEEN = frozenset({"\\Seen"})


def _read_small_if_cached(folder, msg) -> bytes:
    return folder.read_if_cached(msg, max_bytes=INLINE_BYTES)


class FetchCommand(CommandBase):
    @state("selected")
    async def cmd_FETCH(self, tag, args, uid=False):
        if len(args) not in (2, 3):
            raise bad("FETCH needs a sequence set and fetch items")
        sel = self.selected
        if len(args) == 3 and fetchmod.preview_modifiers_follow(args[1], args[2]):
            args = [args[0], [args[1], args[2]]]
        changedsince, vanished = condstore.parse_fetch_modifiers(args[2], uid, self.enabled) \
            if len(args) == 3 else (None, False)
        plan = _plan(args[1], uid, changedsince is not None, "CONDSTORE" in self.enabled and not sel.readonly)
        if changedsince is not None or plan.wants_modseq:
            await condstore.enable(self)
        if uid:
            await self.announce_changes(throttle=True)
        seqs = self.targets(args[0], uid)
        if changedsince is not None:
            seqs = [s for s in seqs if sel.modseq_of(sel.msgs[s - 1].uid) > changedsince]
        if vanished:        # before the FETCH responses (RFC 7162 §3.2.6)
            lines = await self.blocking(condstore.vanished_earlier, sel, changedsince,
                                        parse_sequence_set(as_atom(args[0], "UID set")))
            if lines:
                await self.send(lines)
        items, needs_content, header_only = plan.items, plan.needs_content, plan.header_only
        sets_seen = plan.sets_seen and not sel.readonly and "s" in sel.rights
        wants_flags = plan.wants_flags
        if plan.flags_only:
            # The sync clients' favourite (UID FETCH 1:* (FLAGS)): no disk, no threads.
            names = [i.name for i in items]
            uid_flags = names == ["UID", "FLAGS"]
            with_recent: dict[frozenset, str] = {}  # flag set -> its text with \Recent
            texts: dict[frozenset, str] = {}        # flag set -> its text (one lookup a message)
            msgs = sel.msgs
            is_recent = sel.is_recent
            out = []
            for n, seq in enumerate(seqs, 1):
                m = msgs[seq - 1]
                if is_recent(m):
                    text = with_recent.get(m.flags)
                    if text is None:
                        text = with_recent[m.flags] = flag_list(m.flags | RECENT)
                else:
                    text = texts.get(m.flags)
                    if text is None:
                        text = texts[m.flags] = flag_list(m.flags)
                if uid_flags:
                    out.append(f"* {seq} FETCH (UID {m.uid} FLAGS {text})\r\n")
                else:
                    parts = [f"UID {m.uid}" if name == "UID" else f"MODSEQ ({sel.modseq_of(m.uid)})"
                             if name == "MODSEQ" else "FLAGS " + text for name in names]
                    out.append(f"* {seq} FETCH ({' '.join(parts)})\r\n")
                if n % 5000 == 0:
                    await self.send("".join(out).encode())
                    out = []
            await self.send("".join(out).encode())
            return "FETCH completed"
        indexed, wants_envelope, whole = plan.indexed, plan.wants_envelope, plan.whole
        missing = 0         # GHOST | VANISHED: some messages were answered empty
        step = FETCH_BATCH * 5 if indexed else FETCH_BATCH if needs_content else FETCH_BATCH * 10
        inline = (len(seqs) <= INLINE_MESSAGES and needs_content and not header_only and not indexed
                  and not sets_seen and not plan.prefix_enough and (all(sel.msgs[s - 1].sizes_known for s in seqs)
                                         or not plan.wants_size))
        # Batches from these starts; a first small one of message content, so the client
        # has something to read while the rest is made.
        first = min(step, FIRST_BATCH) if needs_content and not indexed else step
        starts = [0, *range(first, len(seqs), step)] if seqs else []
        ends = starts[1:] + [len(seqs)]

        def batch_work(i: int):
            batch = [View.of(sel, s, sel.folder.read) for s in seqs[starts[i]:ends[i]]]
            if plan.wants_modseq:
                for v in batch:
                    v.modseq = sel.modseq_of(v.uid)

            def work(read=read_message):
                out, changed, gone = [], [], 0
                set_seen = sel.folder.flag_change(add=SEEN) if sets_seen else None
                entries = indexmod.lookup(sel.folder, [v.msg for v in batch], envelope=wants_envelope) \
                    if indexed else None
                if plan.wants_preview:     # made by this process before: no file to read
                    for v in batch:
                        v.preview = preview.cached(sel.folder, v.msg)
                if plan.structure_names:   # the same
                    for v in batch:
                        v.structures = structures.cached(sel.folder, v.msg, plan.structure_names)
                for v in batch:
                    try:
                        msg = v.msg
                        if sel.is_ghost(msg):
                            out.append(_vanished_line(v, items, wants_flags))
                            gone |= GHOST
                            continue
                        entry = None
                        if indexed:
                            entry = entries.get(msg.base)
                            if entry is None:
                                raise NotFound(f"message UID {msg.uid} no longer exists")
                        extra = []
                        made_preview = plan.wants_preview and v.preview is None
                        if set_seen is not None:
                            # On the file as it is now, even when our copy has \Seen
                            # already: another session may have cleared it, or set others.
                            msg = sel.folder.apply_flag_change(msg, set_seen)
                            if msg is not v.msg:
                                changed.append(msg)
                                if sel.condstore:     # this change's mod-sequence, as it is sent
                                    top, new = sel.folder.observe_modseqs([msg])
                                    sel.note_modseqs(top, new)
                                    v.modseq = new[msg.uid]
                                if msg.flags != v.msg.flags and not wants_flags:
                                    extra = [fetchmod.FetchItem("FLAGS")]
                                v.msg = msg
                        kept_structures = len(v.structures) if plan.structure_names else 0
                        if not needs_content:
                            data = None
                        elif plan.structure_only and kept_structures == len(plan.structure_names):
                            data = None
                        elif entry is not None:
                            data = entry.fields
                        elif plan.prefix_enough:       # PREVIEW (and header items): the file's start
                            data = None if plan.preview_only and not made_preview \
                                else preview.read_prefix(sel.folder, msg)
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
                        out.append(b"".join((b"* %d FETCH " % v.seq, *fetchmod.render_parts(
                            v, items + extra, data, flags_text, entry.envelope if entry is not None else None,
                            entry), b"\r\n")))
                        if made_preview:
                            preview.remember(sel.folder, msg, v.preview)
                        if plan.structure_names and len(v.structures) > kept_structures:
                            structures.remember(sel.folder, msg, v.structures)
                    except NotFound:
                        # expunged by another session: no EXPUNGE now (RFC 3501 §7.4.1)
                        out.append(_vanished_line(v, items, wants_flags))
                        gone |= VANISHED
                    except UnknownCTE:
                        out.append(None)
                if set_seen is not None:
                    sel.folder.flush_flag_changes()    # a user's own \Seen (shared folders)
                return out, changed, gone
            return work

        # The next batch is read while this one is sent (unless reading sets \Seen): the
        # client works through one batch as the worker thread makes the next.
        ahead = None
        try:
            for i in range(len(starts)):
                if ahead is not None:
                    lines, changed, gone = await ahead
                    ahead = None
                else:
                    work = batch_work(i)
                    # A few small whole messages the kernel holds in memory: read here, as a
                    # hop to a worker thread costs more than the read (1000 single-message FETCHes).
                    try:
                        done = work(read=_read_small_if_cached) if inline else None
                    except BlockingIOError:
                        done = None
                    lines, changed, gone = done or await self.blocking(work)
                if i + 1 < len(starts) and not sets_seen and _size_of(lines) <= AHEAD_BYTES:
                    ahead = asyncio.ensure_future(self.blocking(batch_work(i + 1)))
                missing = await self._answer_batch(lines, changed, gone, missing,
                                                   last=i + 1 == len(starts))
        finally:
            if ahead is not None:
                _forget(ahead)
        if len(seqs) >= store.SAVE_SIZES_BATCH and plan.wants_size:
            await self.blocking(sel.folder.save_measured_sizes)
        if missing & VANISHED:
            sel.note_vanished()
        if missing:
            return "[EXPUNGEISSUED] Some messages were already expunged"    # Dovecot's words
        return "FETCH completed"

    async def _answer_batch(self, lines: list, changed: list, gone: int, missing: int, last: bool) -> int:
        """Send one batch's FETCH lines (the last, when small, goes with the tagged reply);
        returns `missing` with what this batch found gone."""
        sel = self.selected
        missing |= gone
        for m in changed:
            sel.replace(m)
        if changed and sel.unannounced(m.flags for m in changed):   # another session's keyword
            await self.send(b"".join(sel.keyword_updates(await self.blocking(sel.read_keywords))))
        if any(line is None for line in lines):
            await self.send(b"".join(x for x in lines if x is not None))
            raise no("[UNKNOWN-CTE] Cannot decode the content transfer encoding of a part")
        if any(isinstance(line, bigfetch.Streamed) for line in lines):
            if not await bigfetch.send_all(self, lines):
                missing |= VANISHED
            return missing
        data = b"".join(lines)
        if last and len(data) <= HOLD_BYTES:
            self.hold(data)            # the last batch: out with the tagged reply
        else:
            await self.send(data)
        return missing


class _Plan:
    """What a FETCH's items ask for, worked out once per items text (a client sends the
    same items over and over: one message's body per command)."""
    __slots__ = ("items", "needs_content", "header_only", "sets_seen", "wants_flags", "flags_only",
                 "indexed", "wants_envelope", "whole", "wants_size", "wants_modseq",
                 "wants_preview", "preview_only", "prefix_enough", "structure_names", "structure_only")

    def __init__(self, items: list[fetchmod.FetchItem]):
        self.items = items
        self.needs_content = any(i.needs_content for i in items)
        self.header_only = all(i.header_only for i in items if i.needs_content)
        self.sets_seen = any(i.sets_seen for i in items)
        self.wants_flags = any(i.name == "FLAGS" for i in items)
        self.flags_only = all(i.name in ("UID", "FLAGS", "MODSEQ") for i in items)
        self.wants_modseq = any(i.name == "MODSEQ" for i in items)
        # ENVELOPE and the usual header fields come from the folder's index.
        self.indexed = self.needs_content and all(
            i.name == "ENVELOPE" or (i.kind == "BODY" and not i.numbers and i.text == "HEADER.FIELDS"
                                     and indexmod.covers(i.fields))
            for i in items if i.needs_content)
        self.wants_envelope = any(i.name == "ENVELOPE" for i in items)
        self.whole = bigfetch.whole_item(items)      # a large message asked for whole is streamed
        self.wants_size = any(i.name == "RFC822.SIZE" for i in items)
        # PREVIEW needs only the first bytes of a message, as the header items do
        self.wants_preview = any(i.name == "PREVIEW" for i in items)
        self.preview_only = all(i.name == "PREVIEW" for i in items if i.needs_content)
        self.prefix_enough = self.wants_preview and all(
            i.name == "PREVIEW" or i.header_only for i in items if i.needs_content)
        # BODYSTRUCTURE and BODY: kept per process once made (structures.py)
        self.structure_names = tuple({i.name for i in items if structures.is_structure(i)})
        self.structure_only = bool(self.structure_names) and all(
            structures.is_structure(i) for i in items if i.needs_content)


_plans: dict[tuple, _Plan] = {}
PLANS_KEPT = 256


def _plan(tokens, uid: bool, changedsince: bool = False, condstore: bool = False) -> _Plan:
    """The plan of a FETCH's items (tokens as parsed); the FetchItems in it are shared
    between commands and never changed. changedsince: MODSEQ is implied (RFC 7162
    §3.1.4.1); condstore: a FETCH that sets \\Seen reports UID and MODSEQ (§3.1)."""
    if isinstance(tokens, list):
        key = (uid, changedsince, condstore, tuple(tokens)) if all(isinstance(t, Atom) for t in tokens) else None
    else:
        key = (uid, changedsince, condstore, tokens) if isinstance(tokens, Atom) else None
    plan = _plans.get(key) if key is not None else None
    if plan is None:
        items = fetchmod.parse_items(tokens)
        seen_change = condstore and any(i.sets_seen for i in items)
        if (changedsince or seen_change) and not any(i.name == "MODSEQ" for i in items):
            items.append(fetchmod.FetchItem("MODSEQ"))
        uid = uid or seen_change
        if uid and not any(i.name == "UID" for i in items):
            items.insert(0, fetchmod.FetchItem("UID"))
        plan = _Plan(items)
        if key is not None:
            if len(_plans) >= PLANS_KEPT:
                _plans.clear()
            _plans[key] = plan
    return plan


def _size_of(lines: list) -> int:
    return sum(len(x) for x in lines if isinstance(x, bytes))


def _forget(task: asyncio.Task) -> None:
    """A batch read ahead and not sent (the command failed or was cancelled): its result
    is dropped, and an error in it is not reported as never retrieved."""
    if task.done():
        if not task.cancelled():
            task.exception()
    else:
        task.cancel()


def _vanished_line(v: View, items, wants_flags: bool) -> bytes:
    body = fetchmod.render_vanished(v.msg, items, flag_list(v.flags) if wants_flags else None)
    return b"* %d FETCH " % v.seq + body + b"\r\n"
