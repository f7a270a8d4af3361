"""A folder as a user who does not own it sees it (a shared or public folder): every
flag from the file names, but \\Seen from the user's own record (seenrecord.py), as
Dovecot's INDEXPVT keeps private flags. The owner keeps \\Seen in the file name, so
Dovecot and mutt serving the owner see it unchanged.

Everything a session does goes through the folder: sync() gives the messages with the
user's \\Seen (so FETCH FLAGS, SEARCH SEEN/UNSEEN, SELECT's UNSEEN, STATUS UNSEEN and
COPY's flags follow it), and a flag change writes \\Seen into the record and the other
flags into the file name. A private change gives the message a new mod-sequence in the
folder's mailctl-modseq (CONDSTORE), so the user's other sessions see it as a change.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from . import flags as flags_mod
from . import modseq as modseq_mod
from . import seenrecord
from .folder import Folder
from .message import Message
from .names import MODSEQS

SEEN = "\\Seen"


class PrivateSeenChange(flags_mod.FlagChange):
    """A FlagChange without \\Seen for the file name (its S letter kept as it is);
    seen: True (set), False (clear) or None (untouched) for the user's record."""

    def __init__(self, folder_path, add=(), remove=(), replace=None):
        add, remove = set(add), set(remove)
        if replace is not None:
            replace = set(replace)
            self.seen = SEEN in replace
        else:
            self.seen = True if SEEN in add else False if SEEN in remove else None
        super().__init__(folder_path, add - {SEEN}, remove - {SEEN},
                         None if replace is None else replace - {SEEN})

    def letters(self, old: str) -> str:
        new = super().letters(old)
        if ("S" in new) == ("S" in old):
            return new
        return "".join(sorted((set(new) - {"S"}) | ({"S"} & set(old))))


class PrivateSeenFolder(Folder):
    private_seen = True

    def __init__(self, folder: Folder, user: str):
        super().__init__(folder.maildir, folder.name, folder.path, complete=True)
        self.user = user
        self._in_modseq_step = False
        self._touch_pending: set[int] = set()
        self._pending: dict[int, bool] = {}      # \Seen changes not yet in the record

    def __repr__(self) -> str:
        return f"PrivateSeenFolder({self.name!r})"

    def seen_set(self) -> seenrecord.SeenSet:
        return seenrecord.read(self.path, self.user, self.uidvalidity())

    def seen_stamp(self):
        return seenrecord.signature(self.path, self.user)

    def overlay(self, msgs: Iterable[Message]) -> list[Message]:
        """msgs with the user's \\Seen instead of the file name's."""
        seen = self.seen_set()
        out = []
        for m in msgs:
            mine = m.uid in seen
            if mine != (SEEN in m.flags):
                m = replace(m, flags=m.flags | {SEEN} if mine else m.flags - {SEEN})
            out.append(m)
        return out

    def flag_change(self, add=(), remove=(), replace=None) -> flags_mod.FlagChange:
        return PrivateSeenChange(self.path, add, remove, replace)

    def apply_flag_change(self, msg: Message, change) -> Message:
        """The file's part at once; \\Seen's kept until flush_flag_changes (one write of
        the record for a whole STORE 1:*, before any mod-sequence is asked of it)."""
        on_disk = super().apply_flag_change(msg, change)
        seen = getattr(change, "seen", None)
        if seen is None:
            seen = SEEN in msg.flags
        elif seen != self._pending.get(msg.uid, msg.uid in self.seen_set()):   # against the record now
            self._pending[msg.uid] = seen
        flags = on_disk.flags | {SEEN} if seen else on_disk.flags - {SEEN}
        if on_disk.filename == msg.filename and flags == msg.flags:
            return msg
        return replace(on_disk, flags=flags)

    def flush_flag_changes(self) -> None:
        """Write the \\Seen changes made since into the record, in one step, and give
        those messages a new mod-sequence once someone keeps them (CONDSTORE): inside
        our own modseq step (STORE UNCHANGEDSINCE) at its next observe, else now."""
        pending, self._pending = self._pending, {}
        if not pending:
            return

        def live() -> list[int]:
            uidlist = self.ensure_uidlist()
            return [record[0] for record in uidlist.records.values()]
        seenrecord.update(self.path, self.user, self.uidvalidity(), pending, live)
        self._touch_pending.update(pending)
        if self._in_modseq_step:
            return
        if (self.path / MODSEQS).exists():
            with self.modseqs():
                pass        # touched as the step ends
        else:
            self._touch_pending.clear()     # nobody keeps mod-sequences yet

    def sync(self, sizes: bool = True) -> list[Message]:
        self.flush_flag_changes()
        return self.overlay(super().sync(sizes))

    def modseqs(self) -> modseq_mod.ModSeqStore:
        return _TouchingStore(self)


class _TouchingStore(modseq_mod.ModSeqStore):
    """The folder's mailctl-modseq step; private changes made inside it are given their
    mod-sequence at the next observe, before what it answers."""

    def __init__(self, folder: PrivateSeenFolder):
        super().__init__(folder.path, folder.ensure_uidlist().uidvalidity)
        self.folder = folder

    def __enter__(self):
        store = super().__enter__()
        self.folder._in_modseq_step = True
        return store

    def __exit__(self, *exc) -> None:
        try:
            self._flush()
        finally:
            self.folder._in_modseq_step = False
            super().__exit__(*exc)

    def _flush(self) -> None:
        self.folder.flush_flag_changes()
        pending, self.folder._touch_pending = self.folder._touch_pending, set()
        if pending:
            self.touch(pending)

    def observe(self, msgs, known_uids=None):
        self._flush()
        return super().observe(msgs, known_uids)
