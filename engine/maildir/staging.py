"""Writing a message in: staged in tmp/, then moved into new/ or cur/ by one rename and
made durable by a group commit (one directory fsync and one uidlist append for every
message committed to a folder at the same time)."""
from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import MailError
from ..root import fsync_dir
from .flags import info_letters
from .names import DIR_MODE
from .uidlist import dotlock, new_header


@dataclass
class Delivered:
    folder: str
    uid: int
    path: Path


class Staged:
    """A message written to tmp/ and fsync'd, not yet visible (folder: its Folder)."""

    def __init__(self, folder, tmp_path: Path, base: str, flags: frozenset[str],
                 size: int, to_cur: bool):
        self.folder = folder
        self.tmp_path = tmp_path
        self.base = base
        self.flags = flags
        self.size = size
        self.to_cur = to_cur
        self.assign_uid = True
        self.dest: Path | None = None         # where commit() put it
        self._done = False

    def commit(self) -> Delivered:
        """Make the message visible and durable, give it a UID, count it in the quota.

        With assign_uid off (mail intake) the UID is left to the next reader's sync, as for
        any MTA writing into a Maildir (Dovecot and our IMAP both assign it under the
        uidlist dotlock); Delivered.uid is then 0."""
        if self._done:
            raise MailError(f"{self.tmp_path}: already committed or aborted")
        folder = self.folder
        dest = self.destination()
        _move_into_place(self.tmp_path, dest)
        self._done = True
        try:
            uid = _group_for(folder.path).commit(folder, self.base, dest.parent, self.size, self.assign_uid)
        except BaseException:
            # not known durable: the caller reports failure, so no copy stays visible
            with contextlib.suppress(OSError):
                os.unlink(dest)
            raise
        self.dest = dest
        return Delivered(folder.name, uid, dest)

    def destination(self) -> Path:
        """Where commit() puts the message: new/, or cur/ with its flags."""
        path = self.folder.path
        if self.to_cur:
            return path / "cur" / f"{self.base}:2,{info_letters(path, self.flags)}"
        return path / "new" / self.base

    def abort(self) -> None:
        self._done = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)

    def withdraw(self) -> None:
        """Take a committed copy back (best effort) when the delivery it is part of fails
        as a whole, so no recipient has a message its sender was told was not taken."""
        if self.dest is None:
            return self.abort()
        with contextlib.suppress(OSError):
            os.unlink(self.dest)
            self.folder.maildir.quota.add(-self.size, -1)


def commit_together(staged: list[Staged]) -> list[Delivered]:
    """Several messages staged for one folder made visible as one step (MULTIAPPEND):
    every one linked, the directories fsync'd and the UIDs appended to the uidlist in
    one record write, or none of them left in new/ or cur/.

    The links are made under the uidlist's dotlock and this process's sync gate: a sync
    here waits and then sees all of them; a sync in another process that listed the folder
    midway finds its unnumbered files numbered when it gets the lock, and lists again
    (sync.py), so it too shows all or none."""
    if not staged:
        return []
    folder = staged[0].folder
    if any(s.folder.path != folder.path or s._done for s in staged):
        raise MailError(f"{folder.path}: commit_together takes fresh messages of one folder")
    uidlist = folder.uidlist
    moved: list[Path] = []
    try:
        with uidlist.sync_gate, dotlock(folder.path):
            uidlist.refresh()
            if not uidlist.exists:
                uidlist.rewrite(new_header(folder.maildir.path), {})
            for s in staged:
                dest = s.destination()
                _move_into_place(s.tmp_path, dest)
                s._done = True
                moved.append(dest)
            for path in {d.parent for d in moved}:
                fsync_dir(path)
            first = uidlist.next_uid
            uidlist.append(first, [s.base for s in staged])
    except BaseException:
        for path in moved:
            with contextlib.suppress(OSError):
                os.unlink(path)
        for s in staged:
            s.abort()
        raise
    folder.maildir.quota.add(sum(s.size for s in staged), len(staged))
    out = []
    for uid, s, dest in zip(range(first, first + len(staged)), staged, moved):
        s.dest = dest
        out.append(Delivered(folder.name, uid, dest))
    return out


class _CommitGroup:
    """Group commit for one folder within this process: threads whose message is linked
    wait their turn; each turn fsyncs the directories once and assigns UIDs to every
    message linked so far under one dotlock. Each caller returns only after an fsync
    that started after its link, so a returned UID still means a durable entry, while
    concurrent deliveries share the fsync, the dotlock and the uidlist append."""

    def __init__(self):
        self.mutex = threading.Lock()        # guards pending
        self.turn = threading.Lock()         # one committer at a time
        self.pending: list[list] = []        # [base, dir, size, uid | exception | None, assign]

    def commit(self, folder, base: str, dirpath: Path, size: int, assign: bool = True) -> int:
        entry = [base, dirpath, size, None, assign]
        with self.mutex:
            self.pending.append(entry)
        with self.turn:
            if entry[3] is None:             # no earlier turn took it: commit everything waiting
                with self.mutex:
                    batch, self.pending = self.pending, []
                try:
                    for path in {e[1] for e in batch}:
                        fsync_dir(path)
                    wanted = [e[0] for e in batch if e[4]]
                    records = folder.assign_uids(wanted)[0] if wanted else {}
                    for e in batch:
                        e[3] = records[e[0]][0] if e[4] else 0
                    folder.maildir.quota.add(sum(e[2] for e in batch), len(batch))
                except BaseException as exc:
                    for e in batch:
                        if e[3] is None or e is entry:
                            e[3] = exc
                    raise
        if isinstance(entry[3], BaseException):
            raise entry[3]
        return entry[3]


_COMMIT_GROUPS: dict[str, _CommitGroup] = {}
_groups_mutex = threading.Lock()


def _group_for(folder_path: Path) -> _CommitGroup:
    key = str(folder_path)
    with _groups_mutex:
        group = _COMMIT_GROUPS.get(key)
        if group is None:
            if len(_COMMIT_GROUPS) > 4096:      # forget idle folders
                for k in [k for k, g in _COMMIT_GROUPS.items() if not g.pending and not g.turn.locked()][:2048]:
                    del _COMMIT_GROUPS[k]
            group = _COMMIT_GROUPS[key] = _CommitGroup()
        return group


def _move_into_place(src: Path, dest: Path) -> None:
    """One rename(). It would replace a file of the same name, but names are unique (time,
    pid, counter, random), as with every Maildir writer. A cur/ or new/ missing from a
    folder broken by hand is made again."""
    try:
        os.rename(src, dest)
    except FileNotFoundError:
        if not os.path.exists(src):
            raise
        dest.parent.mkdir(mode=DIR_MODE, exist_ok=True)
        os.rename(src, dest)
