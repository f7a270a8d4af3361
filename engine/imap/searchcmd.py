"""SEARCH (and UID SEARCH): choosing how to run the criteria search.py parsed: one
indexed header key straight over the index's column, flags and sizes in the event loop
when few, anything needing content in a worker thread with the index's entries.

ESEARCH (RETURN (MIN MAX COUNT ALL)) and SORT/THREAD, which share the criteria and the
way of running them, go here or beside this module.
"""
from __future__ import annotations

from functools import partial

from ..maildir import read_message
from . import condstore
from . import index as indexmod
from . import search as searchmod
from .commandbase import CommandBase, state
from .errors import no
from .msgview import View
from .parser import Atom, as_text

INLINE_SEARCH = 20_000  # SEARCH without content keys: more messages x keys run in a worker thread


class SearchCommand(CommandBase):
    @state("selected")
    async def cmd_SEARCH(self, tag, args, uid=False):
        args = list(args)
        if len(args) >= 2 and isinstance(args[0], Atom) and args[0].upper() == "CHARSET":
            charset = as_text(args[1], "charset").upper()
            if charset not in searchmod.SUPPORTED_CHARSETS:
                raise no("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset " + charset[:30])
            args = args[2:]
        nodes = searchmod.parse(args)
        sel = self.selected
        modseq = searchmod.uses_modseq(("AND", nodes))
        if modseq:
            await condstore.enable(self)
        deadline = self.deadline
        # Learn what changed first, so expunged messages match nothing; SEARCH (not UID
        # SEARCH) keeps them numbered as ghosts, as it may not send EXPUNGE (RFC 3501 §7.4.1).
        await self.announce_changes(throttle=True, expunge=uid)
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
                        out.append(m.uid if uid else seq)
                return out
            numbers = await self.blocking(run_column)
            await self.send(("* SEARCH" + "".join(f" {n}" for n in numbers) + "\r\n").encode())
            return _completed(sel)
        searcher = searchmod.Searcher(nodes, len(sel.msgs), sel.uids[-1] if sel.uids else 0)
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
        numbers = [str(v.uid if uid else v.seq) for v in found]
        if modseq and found:        # the highest mod-sequence of those found (RFC 7162 §3.1.5)
            numbers.append(f"(MODSEQ {max(v.modseq for v in found)})")
        await self.send(("* SEARCH" + "".join(" " + n for n in numbers) + "\r\n").encode())
        return _completed(sel)


def _completed(sel) -> str:
    """The tagged text; [EXPUNGEISSUED] when messages the client still numbers were gone
    (their EXPUNGE waits for a command that may send it, RFC 3501 §7.4.1), as Dovecot."""
    return "[EXPUNGEISSUED] SEARCH completed" if sel.ghosts or sel.rescan_due else "SEARCH completed"
