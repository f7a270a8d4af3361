"""One message file as a sync saw it (Message), and where it is now."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import NotFound
from .content import read_all, vsize
from .names import locate
from .uidlist import uidlist_for


# Not frozen: a frozen dataclass's __init__ costs six times a plain one, and a sync of a
# 100,000-message folder makes a Message per changed file. Treat it as immutable all the
# same (only the lazily measured sizes are filled in); hashed by its compared fields.
@dataclass(slots=True, unsafe_hash=True)
class Message:
    """One message file as last seen.

    path and mtime (the INTERNALDATE) are computed on use, so a sync of a large
    folder costs no Path objects and no stat() calls. So are the sizes of a file named
    without ,S=/,W= and listed without S/W keys when the sync was told not to read
    files (sync(sizes=False)): the file is read once, when a size is first asked for.
    """
    uid: int
    base: str
    subdir: str
    filename: str
    flags: frozenset[str]
    _size: int | None = field(compare=False)
    _vsize: int | None = field(compare=False)
    folder_path: Path

    @property
    def size(self) -> int:
        return self._size if self._size is not None else self._measure()[0]

    @property
    def vsize(self) -> int:
        return self._vsize if self._vsize is not None else self._measure()[1]

    @property
    def sizes_known(self) -> bool:
        """Both sizes known without reading the file."""
        return self._size is not None and self._vsize is not None

    def _measure(self) -> tuple[int, int]:
        try:
            data = read_all(str(current_path(self)))
        except (NotFound, FileNotFoundError):
            return 0, 0  # expunged meanwhile; not remembered
        sizes = len(data), vsize(data)
        uidlist_for(self.folder_path).remember_sizes(self.base, sizes)
        if self._size is None:
            self._size = sizes[0]
        if self._vsize is None:
            self._vsize = sizes[1]
        return self._size, self._vsize

    @property
    def path(self) -> Path:
        return self.folder_path / self.subdir / self.filename

    @property
    def mtime(self) -> float:
        """File mtime = INTERNALDATE; found by base name if the file was renamed meanwhile."""
        for _ in range(5):
            try:
                return os.stat(current_path(self)).st_mtime
            except FileNotFoundError:
                continue
        raise NotFound(f"message {self.base} no longer exists in {self.folder_path}")


def current_path(msg: Message) -> Path:
    """Where the message's file is now (a flag change renames it); NotFound if it is gone."""
    path = msg.path
    if path.exists():
        return path
    located = locate(msg.folder_path, msg.base)
    if located is None:
        raise NotFound(f"message UID {msg.uid} in {msg.folder_path} no longer exists")
    return msg.folder_path / located[0] / located[1]


def current_message(msg: Message) -> Message | None:
    """msg under the name its file has now (another process may have renamed it: a flag
    change); None when it is gone. Only the name is new: flags are msg's (what reads
    the name, modseq.observe, needs no more)."""
    if os.path.lexists(f"{msg.folder_path}/{msg.subdir}/{msg.filename}"):
        return msg
    located = locate(msg.folder_path, msg.base)
    if located is None:
        return None
    return replace(msg, subdir=located[0], filename=located[1])
