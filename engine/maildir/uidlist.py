"""dovecot-uidlist (v3): a folder's IMAP UIDs, parsed once per process and then only
as far as it was appended; and dovecot-uidvalidity, the account's UIDVALIDITY counter.

The first line is "3 V<uidvalidity> N<next uid> G<guid>"; each record is
"<uid> [<keys>] :<file name>", keys such as "S<size> W<vsize>". Records are appended
with one O_APPEND write, or the file is replaced by rename, always under Dovecot's
dotlock ("dovecot-uidlist.lock").
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

from .. import nofollow
from ..locks import DotLock, dir_lock
from ..root import atomic_write, fsync_dir
from ..storage_errors import storage_faults
from .names import FILE_MODE, UIDLIST, UIDVALIDITY


class ParsedUidList(NamedTuple):
    """A whole dovecot-uidlist as read by parse_uidlist()."""
    version: int                             # 3, or 1 for the old format
    header: dict[str, str]                   # first letter -> the rest, e.g. "V" -> "1700000000"
    records: dict[str, tuple[int, str]]      # base name -> (uid, record keys), in file order


def parse_header(line: str) -> tuple[int, dict[str, str]] | None:
    """The version and header fields of a uidlist's first line; None for an unknown version."""
    fields = line.split()
    if fields[:1] == ["3"]:
        return 3, {f[0]: f[1:] for f in fields[1:] if f}
    if fields[:1] == ["1"] and len(fields) >= 3:
        return 1, {"V": fields[1], "N": fields[2]}
    return None


def parse_records(text: str, records: dict[str, tuple[int, str]], version: int = 3) -> int:
    """Add the records of uidlist lines to records (base name -> (uid, keys)); lines that
    are not records are skipped. Returns the highest UID read (0 if none)."""
    last_uid = 0
    for line in text.split("\n"):
        uid_text, _, rest = line.partition(" ")
        if not uid_text.isdigit():
            continue
        if rest[:1] == ":":
            keys, filename = "", rest[1:]
        else:
            keys, sep, filename = rest.partition(" :")
            if not sep:
                if version != 1:
                    continue
                keys, filename = "", rest
        uid = int(uid_text)
        records[filename.partition(":")[0]] = (uid, keys)
        if uid > last_uid:
            last_uid = uid
    return last_uid


def parse_uidlist(text: str) -> ParsedUidList | None:
    """A whole dovecot-uidlist's text; None when its version is unknown."""
    head, _, rest = text.partition("\n")
    parsed = parse_header(head)
    if parsed is None:
        return None
    records: dict[str, tuple[int, str]] = {}
    parse_records(rest, records, parsed[0])
    return ParsedUidList(parsed[0], parsed[1], records)


def dotlock(folder_path: Path) -> DotLock:
    """Dovecot's lock on a folder's uidlist (and on its dovecot-keywords)."""
    return DotLock(folder_path / (UIDLIST + ".lock"))


class LastSync(NamedTuple):
    """A folder's last sync in this process, for the next one to reuse or patch."""
    generation: int            # of the uidlist records it was made from
    keywords: tuple            # dovecot-keywords as it was (flags.keywords_ident)
    sized: bool                # every message's sizes known
    names: dict                # subdir -> frozenset of the file names listed
    result: list               # the Messages, by UID
    stamp: tuple | None        # folder_stamp() taken before the listing, if settled; else None


class UidList:
    """The parsed dovecot-uidlist of one folder, kept up to date incrementally.

    records maps base name -> (uid, record keys such as "W2481"). The dict is replaced,
    never changed in place, so a snapshot taken by a reader stays consistent.
    """

    def __init__(self, folder_path: Path):
        self.path = folder_path / UIDLIST
        self.mutex = threading.Lock()
        # One sync of the folder at a time in this process: a session's sync arriving
        # while a background refresh lists 100,000 files waits for it and reuses it.
        self.sync_gate = threading.Lock()
        # Messages of the last sync; each is checked against its record before reuse.
        self._messages: dict[str, dict] = {"new": {}, "cur": {}}
        self._kept: list | None = None       # see keep_messages
        self._messages_ident: tuple | None = None
        # base -> (size, vsize) measured on first use (see Message): another sync of
        # the folder in this process makes its Message with them, not unknown again.
        self.sizes: dict[str, tuple[int, int]] = {}
        self.unsaved: set[str] = set()  # bases whose measured sizes are not in the file yet
        self._reset()

    def _reset(self) -> None:
        # Bumped whenever records may have changed other than by appended lines (a
        # rewrite, a new file): a sync's result made before then cannot be patched.
        self.generation = getattr(self, "generation", 0) + 1
        self.last_sync: LastSync | None = None
        self.exists = False
        self.version = 3
        self.header: dict[str, str] = {}
        self.records: dict[str, tuple[int, str]] = {}
        self.last_uid = 0
        self._ident: tuple[int, int] | None = None
        self._header_line = b""
        self._offset = 0
        self._tail = b""

    @property
    def uidvalidity(self) -> int:
        value = self.header.get("V", "")
        return int(value) if value.isdigit() else 0

    @property
    def next_uid(self) -> int:
        value = self.header.get("N", "")
        return max(int(value) if value.isdigit() else 1, self.last_uid + 1)

    def refresh(self) -> None:
        with self.mutex:
            try:
                f = os.fdopen(nofollow.open_file(self.path), "rb")
            except FileNotFoundError:          # or a link (LinkRefused): rewritten as missing
                self._reset()
                return
            with f:
                st = os.fstat(f.fileno())
                if self._continues(f, st):
                    f.seek(self._offset)
                    self._parse_records(f.read())
                else:
                    self._reset()
                    f.seek(0)      # _continues() may have read part of it
                    self._parse_all(f.read())
                    self._ident = (st.st_dev, st.st_ino)

    def _continues(self, f, st: os.stat_result) -> bool:
        """Is this the file we parsed, only appended to? (A rewrite may reuse the inode.)"""
        if self._ident != (st.st_dev, st.st_ino) or st.st_size < self._offset:
            return False
        if f.read(len(self._header_line)) != self._header_line:
            return False
        f.seek(self._offset - len(self._tail))
        return f.read(len(self._tail)) == self._tail

    def _parse_all(self, data: bytes) -> None:
        end = data.find(b"\n")
        if end < 0:
            return
        parsed = parse_header(data[:end].decode("utf-8", "replace"))
        if parsed is None:
            return  # unknown version: treated as absent, rewritten with a new UIDVALIDITY
        self.version, self.header = parsed
        self.exists = True
        self._header_line = data[:end + 1]
        self._offset = end + 1
        self._tail = self._header_line
        self._parse_records(data[end + 1:])

    def _parse_records(self, data: bytes) -> None:
        end = data.rfind(b"\n")
        if end < 0:
            return  # nothing new, or a line still being appended
        records = dict(self.records)
        last_uid = parse_records(data[:end].decode("utf-8", "surrogateescape"), records, self.version)
        self.records = records
        self.last_uid = max(self.last_uid, last_uid)
        self._offset += end + 1
        self._tail = data[data.rfind(b"\n", 0, end) + 1:end + 1]

    def message_cache(self, keywords_ident: tuple) -> dict[str, dict]:
        """Messages of the last sync by subdir and file name (dropped if keywords changed)."""
        if keywords_ident != self._messages_ident:
            self._messages, self._kept = {"new": {}, "cur": {}}, None
            self._messages_ident = keywords_ident
        if self._kept is not None:
            kept, self._kept = self._kept, None
            self._messages = {sub: {m.filename: m for m in kept if m.subdir == sub} for sub in ("new", "cur")}
        return self._messages

    def replace_message_cache(self, messages: dict[str, dict]) -> None:
        """message_cache() as a patched sync left it (same keywords)."""
        self._messages = messages

    def remember_sizes(self, base: str, sizes: tuple[int, int]) -> None:
        """Sizes measured from the file, for later syncs here, and to be saved into the
        record's S/W keys for other processes (Folder.save_sizes)."""
        self.sizes[base] = sizes
        self.unsaved.add(base)

    def keep_messages(self, messages: list) -> None:
        """A full sync's messages, made into message_cache() only when a later full sync
        needs it: most processes never list a large folder from scratch twice."""
        self._kept = messages

    # Writers hold the dotlock and call refresh() first.
    def append(self, first_uid: int, bases: list[str], keys: list[str] | None = None) -> None:
        """Append records: UIDs first_uid, first_uid + 1, ... for bases, with their
        record keys (None: none). Whole-list operations, not a loop: a first SELECT
        numbers 100,000 files."""
        uids = range(first_uid, first_uid + len(bases))
        if keys is None:
            keys = [""] * len(bases)
            text = "".join([f"{uid} :{base}\n" for uid, base in zip(uids, bases)])
        else:
            text = "".join(f"{uid} {k} :{b}\n" if k else f"{uid} :{b}\n" for uid, k, b in zip(uids, keys, bases))
        data = text.encode("utf-8", "surrogateescape")
        with storage_faults(self.path):
            fd = nofollow.open_file(self.path, os.O_RDWR | os.O_APPEND)
            try:
                st = os.fstat(fd)
                ours = (st.st_dev, st.st_ino) == self._ident and st.st_size == self._offset
                if not self._ends_with_newline(fd):
                    data, ours = b"\n" + data, False
                # No fsync: the uidlist is metadata that sync() rebuilds from the files; the
                # message itself was fsync'd with its directory before anyone was told it is stored.
                self._write_whole(fd, data, st.st_size)
            finally:
                os.close(fd)
        if not ours:
            self.refresh()
            return
        # The file was exactly what we had parsed: take the records as we wrote them
        # instead of reading and parsing them back (100,000 lines at a first SELECT).
        with self.mutex:
            records = dict(self.records)
            records.update(zip(bases, zip(uids, keys)))
            self.records = records
            self.last_uid = max(self.last_uid, uids[-1])
            self._offset += len(data)
            self._tail = data[data.rfind(b"\n", 0, len(data) - 1) + 1:]

    @staticmethod
    def _write_whole(fd: int, data: bytes, size_before: int) -> None:
        """All the records or none: a disk that fills mid-write would leave half a
        record, which every reader (Dovecot too) would take for a record."""
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size_before)   # freeing blocks works on a full disk
            raise

    @staticmethod
    def _ends_with_newline(fd: int) -> bool:
        size = os.fstat(fd).st_size
        return size == 0 or os.pread(fd, 1, size - 1) == b"\n"

    def rewrite(self, header: dict[str, str], records: dict[str, tuple[int, str]]) -> None:
        lines = ["3 " + " ".join(f"{k}{v}" for k, v in header.items()) + "\n"]
        for base, (uid, keys) in sorted(records.items(), key=lambda item: item[1][0]):
            lines.append(f"{uid} {keys} :{base}\n" if keys else f"{uid} :{base}\n")
        tmp = self.path.with_name(UIDLIST + ".tmp")
        with storage_faults(self.path):
            fd = nofollow.open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                try:
                    self._write_whole(fd, "".join(lines).encode("utf-8", "surrogateescape"), 0)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)          # the old uidlist stays as it was
                raise
            fsync_dir(self.path.parent)
        self.refresh()


_UIDLIST_CACHE: OrderedDict[str, UidList] = OrderedDict()
_UIDLIST_CACHE_SIZE = 64
_cache_mutex = threading.Lock()


def uidlist_for(folder_path: Path) -> UidList:
    """A process-wide parsed uidlist per folder, so a sync only reads what was appended."""
    key = str(folder_path)
    with _cache_mutex:
        uidlist = _UIDLIST_CACHE.get(key)
        if uidlist is None:
            uidlist = _UIDLIST_CACHE[key] = UidList(folder_path)
            if len(_UIDLIST_CACHE) > _UIDLIST_CACHE_SIZE:
                _UIDLIST_CACHE.popitem(last=False)
        _UIDLIST_CACHE.move_to_end(key)
        return uidlist


# -- dovecot-uidvalidity (one per account) ----------------------------------------

def new_header(account_path: Path) -> dict[str, str]:
    """The header of a new uidlist in this account: a fresh UIDVALIDITY, a GUID."""
    return {"V": str(next_uidvalidity(account_path)), "N": "1", "G": secrets.token_hex(16)}


def next_uidvalidity(account_path: Path) -> int:
    """Dovecot's scheme: a hex counter in dovecot-uidvalidity, at least the current time."""
    with dir_lock(account_path):
        current = _read_hex(account_path / UIDVALIDITY)
        value = max(current + 1, int(time.time()))
        atomic_write(account_path / UIDVALIDITY, f"{value:08x}", mode=FILE_MODE)
        marker = account_path / f"{UIDVALIDITY}.{value:08x}"
        try:
            os.rename(account_path / f"{UIDVALIDITY}.{current:08x}", marker)
        except FileNotFoundError:
            marker.touch(mode=FILE_MODE)
        return value


def _read_hex(path: Path) -> int:
    try:
        return int(nofollow.read_text(path).strip() or "0", 16)
    except (FileNotFoundError, ValueError):
        return 0
