"""SEARCH, SORT and THREAD (and their UID forms): choosing how to run the criteria
search.py parsed: one indexed header key straight over the index's column, flags and
sizes in the event loop when few, anything needing content in a worker thread with the
index's entries. Then ESEARCH/ESORT's RETURN options and SEARCHRES's `$`
(searchreturn.py), the sort keys (sort.py), the threads (thread.py).
"""
from __future__ import annotations

import contextlib
import threading
from functools import partial

from ..maildir import read_message
from . import condstore
from . import index as indexmod
from . import search as searchmod
from . import searchreturn
from . import sort as sortmod
from . import thread as threadmod
from .commandbase import CommandBase, state
from .errors import bad, no
from .msgview import View
from .parser import Atom, ParseError, as_text

INLINE_SEARCH = 20_000  # SEARCH without content keys: more messages x keys run in a worker thread
MAX_THREADS_KEPT = 8    # THREAD answers this process keeps (see cmd_THREAD)
_THREADS: dict[tuple, str] = {}
_THREADS_LOCK = threading.Lock()


class SearchCommand(CommandBase):
    @state("selected")
    async def cmd_SEARCH(self, tag, args, uid=False):
        args = list(args)
        opts = None
        if len(args) >= 2 and isinstance(args[0], Atom) and args[0].upper() == "RETURN":
            opts = searchreturn.parse_return(args[1])
            args = args[2:]
        elif self.rev.esearch:      # IMAP4rev2 has no SEARCH response: RETURN () it is
            opts = searchreturn.parse_return([])
        sel = self.selected
        with self._saving(opts):
            if len(args) >= 2 and isinstance(args[0], Atom) and args[0].upper() == "CHARSET":
                _check_charset(args[1])
                args = args[2:]
            seqs = await self.matching(args, uid)
        numbers = [sel.msgs[s - 1].uid for s in seqs] if uid else seqs
        if opts is None:
            tail = f" (MODSEQ {self.search_modseq})" if self.search_modseq and numbers else ""
            await self.send(("* SEARCH" + "".join(f" {n}" for n in numbers) + tail + "\r\n").encode())
        else:
            self._save(opts, seqs, numbers, uid)
            if opts.reports:
                modseq = self._reported_modseq(opts, numbers, uid)
                await self.send(searchreturn.esearch_line(tag, uid, opts, numbers, modseq=modseq))
        return _completed(sel)

    @state("selected")
    async def cmd_SORT(self, tag, args, uid=False):
        """SORT and ESORT (RFC 5256, 5267): `SORT [RETURN (...)] (keys) charset criteria`."""
        args = list(args)
        opts = None
        if len(args) >= 2 and isinstance(args[0], Atom) and args[0].upper() == "RETURN":
            opts = searchreturn.parse_return(args[1])
            args = args[2:]
        sel = self.selected
        with self._saving(opts):
            if len(args) < 3:
                raise ParseError("SORT needs sort keys, a charset and search criteria")
            criteria = sortmod.parse_criteria(args[0])
            _check_charset(args[1])
            seqs = await self.matching(args[2:], uid)
            msgs = [sel.msgs[s - 1] for s in seqs]
            order = await self.blocking(sortmod.sort_order, sel.folder, msgs, criteria)
        seqs = [seqs[i] for i in order]
        numbers = [sel.msgs[s - 1].uid for s in seqs] if uid else seqs
        if opts is None:
            await self.send(("* SORT" + "".join(f" {n}" for n in numbers) + "\r\n").encode())
        else:
            self._save(opts, seqs, numbers, uid, ordered=True)
            if opts.reports:
                await self.send(searchreturn.esearch_line(tag, uid, opts, numbers, ordered=True))
        return "[EXPUNGEISSUED] SORT completed" if sel.ghosts or sel.rescan_due else "SORT completed"

    @state("selected")
    async def cmd_THREAD(self, tag, args, uid=False):
        """THREAD (RFC 5256): `THREAD algorithm charset criteria`."""
        args = list(args)
        if len(args) < 3:
            raise ParseError("THREAD needs an algorithm, a charset and search criteria")
        algorithm = as_text(args[0], "thread algorithm").upper()
        if algorithm not in ("REFERENCES", "ORDEREDSUBJECT"):
            raise bad("Unknown thread algorithm " + algorithm[:30])
        _check_charset(args[1])
        sel = self.selected
        seqs = await self.matching(args[2:], uid)
        msgs = [sel.msgs[s - 1] for s in seqs]
        numbers = [m.uid for m in msgs] if uid else seqs

        def build():
            # The same messages under the same numbers thread alike: a client threading
            # the folder again (each time it opens it) gets the answer made last time.
            key = (str(sel.folder.path), algorithm, tuple(m.base for m in msgs), tuple(numbers))
            text = _THREADS.get(key)
            if text is None:
                tmsgs = sortmod.thread_messages(sel.folder, msgs, numbers)
                roots = threadmod.references(tmsgs) if algorithm == "REFERENCES" else threadmod.ordered_subject(tmsgs)
                text = threadmod.encode(roots)
                with _THREADS_LOCK:
                    while len(_THREADS) >= MAX_THREADS_KEPT:
                        _THREADS.pop(next(iter(_THREADS)))
                    _THREADS[key] = text
            return text
        text = await self.blocking(build)
        await self.send(("* THREAD" + (" " + text if text else "") + "\r\n").encode())
        return "[EXPUNGEISSUED] THREAD completed" if sel.ghosts or sel.rescan_due else "THREAD completed"

    def _reported_modseq(self, opts, numbers, uid) -> int:
        """ESEARCH's MODSEQ (RFC 7162 §3.1.5): the highest of the messages it returns, so
        of MIN and MAX alone when only they are asked for."""
        if not self.search_modseq or opts.all or opts.count or opts.partial is not None:
            return self.search_modseq
        sel = self.selected
        shown = searchreturn.saved_numbers(opts, numbers)
        return max((sel.modseq_of(n if uid else sel.msgs[n - 1].uid) for n in shown), default=0)

    # -- SEARCHRES (RFC 5182) -------------------------------------------------------
    def saved_uids(self) -> frozenset[int]:
        """The UIDs `$` names: the last SEARCH RETURN (SAVE) in this selected mailbox,
        empty before any (or after a failed one, or in another mailbox)."""
        saved = self.search_saved
        return saved[1] if saved is not None and saved[0] is self.selected else frozenset()

    @contextlib.contextmanager
    def _saving(self, opts):
        """A search that SAVEs and fails leaves `$` empty (RFC 5182 §2.1)."""
        try:
            yield
        except BaseException:
            if opts is not None and opts.save:
                self.search_saved = (self.selected, frozenset())
            raise

    def _save(self, opts, seqs, numbers, uid, ordered=False) -> None:
        if opts.save:
            kept = set(searchreturn.saved_numbers(opts, numbers, ordered))
            sel = self.selected
            uids = frozenset(n for n in kept) if uid else frozenset(sel.msgs[s - 1].uid for s in kept)
            self.search_saved = (sel, uids)

    # -- running the criteria -------------------------------------------------------
    async def matching(self, args: list, uid: bool) -> list[int]:
        """The sequence numbers (ascending) of the messages the criteria match."""
        nodes = searchmod.parse(args)
        self.rev.check_search(nodes)
        sel = self.selected
        self.search_modseq = 0
        modseq = searchmod.uses_modseq(("AND", nodes))
        if modseq:
            await condstore.enable(self)
        deadline = self.deadline
        # Learn what changed first, so expunged messages match nothing; SEARCH (not UID
        # SEARCH) keeps them numbered as ghosts, as it may not send EXPUNGE (RFC 3501 §7.4.1).
        await self.announce_changes(throttle=True, expunge=uid)
        if nodes == [("ALL",)]:      # what webmail sorts and threads: no message to look at
            return [i for i, m in enumerate(sel.msgs, 1) if not sel.ghosts or not sel.is_ghost(m)]
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
                    if text is not None and (not needle or needle in text) and not sel.is_ghost(m):
                        out.append(seq)
                return out
            return await self.blocking(run_column)
        searcher = searchmod.Searcher(nodes, len(sel.msgs), sel.uids[-1] if sel.uids else 0,
                                      saved=self.saved_uids())
        # open, read, close: no stat, no buffered file (SEARCH BODY reads every message)
        load = partial(read_message, sel.folder)
        views = [View.of(sel, i, load) for i in range(1, len(sel.msgs) + 1)]
        if sel.ghosts:  # expunged elsewhere, still numbered for the client: they match nothing
            views = [v for v in views if not sel.is_ghost(v.msg)]
        if modseq:
            for v in views:
                v.modseq = sel.modseq_of(v.uid)
        if searcher.needs_content():
            names = searchmod.header_names(("AND", nodes)) & indexmod.INDEXED

            def run():
                if names:
                    entries = indexmod.lookup(sel.folder, [v.msg for v in views], complete=True)
                    columns = indexmod.columns(sel.folder, names - {"date"}, entries)
                    for v in views:
                        v._entry = entries.get(v.msg.base)
                        v._columns = columns
                # a file gone meanwhile matches nothing (search.py): no NotFound here
                found = []
                for v in searchmod.within(views, deadline):
                    if searcher.matches(v):
                        found.append(v)
                    v.forget()      # else every message read stays in memory to the end
                return found
            found = await self.blocking(run)
        elif len(views) * searchmod.size(("AND", nodes)) <= INLINE_SEARCH:
            found = [v for v in views if searcher.matches(v)]
        else:  # flags, sizes, dates of a large folder: still off the event loop
            found = await self.blocking(
                lambda: [v for v in searchmod.within(views, deadline) if searcher.matches(v)])
        if modseq and found:        # the highest mod-sequence of those found (RFC 7162 §3.1.5)
            self.search_modseq = max(v.modseq for v in found)
        return [v.seq for v in found]


def _check_charset(token) -> None:
    charset = as_text(token, "charset").upper()
    if charset not in searchmod.SUPPORTED_CHARSETS:
        raise no("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset " + charset[:30])


def _completed(sel) -> str:
    """The tagged text; [EXPUNGEISSUED] when messages the client still numbers were gone
    (their EXPUNGE waits for a command that may send it, RFC 3501 §7.4.1), as Dovecot."""
    return "[EXPUNGEISSUED] SEARCH completed" if sel.ghosts or sel.rescan_due else "SEARCH completed"
