"""The Maildir++ store, written exactly as Dovecot writes it (DESIGN.md §4).

One account is one Maildir++ tree: INBOX is the top directory, folder "A/B" is ".A.B/"
with names in modified UTF-7. IMAP UIDs live in each folder's dovecot-uidlist (v3),
keyword letters in dovecot-keywords, quota in maildirsize. Dovecot, mutt and our own
processes may work on the same tree at once, so every change is an atomic rename, an
O_EXCL create or an O_APPEND of one line, and uidlist writes hold Dovecot's dotlock.
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import operator
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, NamedTuple

from . import foldernames, mutf7, nofollow, uniq
from .locks import DotLock, dir_lock
from .errors import AlreadyExists, InvalidInput, MailError, NotFound, QuotaExceeded
from .root import Root, atomic_write, fsync_dir
from .storage_errors import StorageError, storage_faults, tolerate_storage_faults

SEPARATOR = foldernames.SEPARATOR
SPECIAL_USE = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
               "Archive": "\\Archive"}
DEFAULT_FOLDERS = ["Sent", "Drafts", "Trash", "Junk", "Archive"]
FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "$Forwarded": "P", "\\Answered": "R",
                "\\Seen": "S", "\\Deleted": "T"}

INBOX = foldernames.INBOX
UIDLIST = "dovecot-uidlist"
KEYWORDS = "dovecot-keywords"
UIDVALIDITY = "dovecot-uidvalidity"
MAILDIRSIZE = "maildirsize"
SUBSCRIPTIONS = "subscriptions"
MAX_KEYWORDS = 26
MAILDIRSIZE_MAX = 5120              # recalculate once the file reaches this size
MAILDIRSIZE_STALE_SECS = 15 * 60    # as Dovecot: an old, implausible maildirsize is redone
DIR_MODE = 0o700
FILE_MODE = 0o600

FORWARDED = "$Forwarded"
_LETTER_FLAGS = {letter: flag for flag, letter in FLAG_LETTERS.items()}
_FLAG_BY_LOWER = {flag.lower(): flag for flag in FLAG_LETTERS}
_KEYWORD_BAD_CHARS = set('(){%*"\\]')
_counter = itertools.count(1)


def _escaped_hostname() -> str:
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072")


_HOST = _escaped_hostname()


# -- folder names (the one rule: engine/foldernames.py) ------------------------

_split_name = foldernames.split
_dirname = foldernames.dirname
_name_from_dirname = foldernames.name_from_dirname
canonical_name = foldernames.canonical


# -- message file names ------------------------------------------------------

def _vsize(data: bytes) -> int:
    """RFC822.SIZE: the size with every bare LF counted as CRLF."""
    if b"\r" not in data:  # the usual LF-only file: one pass
        return len(data) + data.count(b"\n")
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def _read_all(path: str) -> bytes:
    """A whole file by plain system calls (cheaper than Path.read_bytes for many small files)."""
    fd = nofollow.open_file(path)
    try:
        size = os.fstat(fd).st_size
        chunks = [os.read(fd, size + 1)]
        while chunks[-1] and sum(map(len, chunks)) <= size:
            chunks.append(os.read(fd, 1 << 20))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _unique_base(size: int, vsize: int) -> str:
    now = time.time()
    secs = int(now)
    usecs = int((now - secs) * 1_000_000)
    return (f"{secs}.M{usecs}P{uniq.pid()}Q{next(_counter)}R{uniq.random_hex(4)}.{_HOST}"
            f",S={size},W={vsize}")


def _field(base: str, marker: str) -> int | None:
    start = base.find(marker)
    if start < 0:
        return None
    end = base.find(",", start + 3)
    value = base[start + 3:] if end < 0 else base[start + 3:end]
    return int(value) if value.isdigit() else None


def _sizes_from(base: str, keys: str) -> tuple[int | None, int | None]:
    """(size, vsize) from ,S=/,W= in the base name or S/W keys of the uidlist record."""
    if "," not in base:   # named by another tool (no sizes): the usual case at a first sync
        if not keys:
            return None, None
        size = vsize = None
    else:
        size, vsize = _field(base, ",S="), _field(base, ",W=")
    for key in keys.split():
        if key[0] == "S" and size is None and key[1:].isdigit():
            size = int(key[1:])
        elif key[0] == "W" and vsize is None and key[1:].isdigit():
            vsize = int(key[1:])
    return size, vsize


# Directory times come from a coarse clock (a few milliseconds a tick): a listing begun
# this long after the newest change it saw cannot have missed a change with the same time.
MTIME_SLACK = 0.05


def folder_stamp(path: Path) -> tuple[tuple, float]:
    """What stat() says of a folder's new/, cur/ and dovecot-uidlist, and the newest of
    their times. While the stamp stays the same, a listing begun MTIME_SLACK after that
    time is still the folder's (Folder.sync, and folder_cache's listings and snapshots)."""
    out = []
    for name in ("new", "cur", UIDLIST):
        try:
            st = os.lstat(path / name)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except FileNotFoundError:
            out.append(None)
    return tuple(out), max((s[0] for s in out if s), default=0) / 1e9


def _delivery_order(bases: Iterable[str]) -> list[str]:
    """Base names "<secs>.M<usecs>..." in delivery order (seconds, then microseconds, then
    the name), for giving out UIDs. Two sorts, the first by the name itself, because one
    sort by a (secs, usecs, name) tuple costs three times as much at 100,000 names."""
    names = sorted(bases)
    if len(names) > 1000:
        # Names of ten digits of seconds and no "M<usecs>" after the dot (Postfix's
        # virtual(8) and others) are already in delivery order when sorted by name: one
        # regex scan instead of a Python function per name (a first SELECT of 100,000).
        # (A name with a line break in it only adds lines to pass.)
        if not _NOT_SECONDS_ONLY.search("\n".join(names)):
            return names
    return sorted(names, key=_delivery_time)


_NOT_SECONDS_ONLY = re.compile(r"^(?![0-9]{10}\.(?!M[0-9]))", re.MULTILINE)


def _delivery_time(base: str) -> int:
    secs, _, rest = base.partition(".")
    if not (secs.isascii() and secs.isdigit()):
        return 0
    usecs = rest[1:].partition("P")[0] if rest[:1] == "M" else ""
    return int(secs) * 1_000_000 + (int(usecs) if usecs.isascii() and usecs.isdigit() and len(usecs) <= 6 else 0)


# -- dovecot-uidlist -----------------------------------------------------------

class _LastSync(NamedTuple):
    """A folder's last sync in this process, for the next one to reuse or patch."""
    generation: int            # of the uidlist records it was made from
    keywords: tuple            # dovecot-keywords as it was (_keywords_ident)
    sized: bool                # every message's sizes known
    names: dict                # subdir -> frozenset of the file names listed
    result: list               # the Messages, by UID
    stamp: tuple | None        # folder_stamp() taken before the listing, if settled; else None


_DECLINED = object()    # _sync_changes(): more files need UIDs than a quiet sync gives


class _UidList:
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
        self._messages: dict[str, dict[str, Message]] = {"new": {}, "cur": {}}
        self._kept: list[Message] | None = None       # see keep_messages
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
        self.last_sync: _LastSync | None = None
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
        fields = data[:end].decode("utf-8", "replace").split()
        if fields[:1] == ["3"]:
            self.header = {f[0]: f[1:] for f in fields[1:] if f}
        elif fields[:1] == ["1"] and len(fields) >= 3:
            self.version = 1
            self.header = {"V": fields[1], "N": fields[2]}
        else:
            return  # unknown version: treated as absent, rewritten with a new UIDVALIDITY
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
        last_uid = self.last_uid
        for line in data[:end].decode("utf-8", "surrogateescape").split("\n"):
            uid_text, _, rest = line.partition(" ")
            if not uid_text.isdigit():
                continue
            if rest[:1] == ":":
                keys, filename = "", rest[1:]
            else:
                keys, sep, filename = rest.partition(" :")
                if not sep:
                    if self.version != 1:
                        continue
                    keys, filename = "", rest
            uid = int(uid_text)
            records[filename.partition(":")[0]] = (uid, keys)
            if uid > last_uid:
                last_uid = uid
        self.records = records
        self.last_uid = last_uid
        self._offset += end + 1
        self._tail = data[data.rfind(b"\n", 0, end) + 1:end + 1]

    def message_cache(self, keywords_ident: tuple) -> dict[str, dict[str, Message]]:
        """Messages of the last sync by subdir and file name (dropped if keywords changed)."""
        if keywords_ident != self._messages_ident:
            self._messages, self._kept = {"new": {}, "cur": {}}, None
            self._messages_ident = keywords_ident
        if self._kept is not None:
            kept, self._kept = self._kept, None
            self._messages = {sub: {m.filename: m for m in kept if m.subdir == sub} for sub in ("new", "cur")}
        return self._messages

    def remember_sizes(self, base: str, sizes: tuple[int, int]) -> None:
        """Sizes measured from the file, for later syncs here, and to be saved into the
        record's S/W keys for other processes (Folder._save_sizes)."""
        self.sizes[base] = sizes
        self.unsaved.add(base)

    def keep_messages(self, messages: list[Message]) -> None:
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


# Measured sizes are written into the uidlist once this many (or a tenth of the folder) wait.
SAVE_SIZES_BATCH = 1000

_UIDLIST_CACHE: OrderedDict[str, _UidList] = OrderedDict()
_UIDLIST_CACHE_SIZE = 64
_cache_mutex = threading.Lock()


_by_uid = operator.attrgetter("uid")


def _uidlist_for(folder_path: Path) -> _UidList:
    """A process-wide parsed uidlist per folder, so a sync only reads what was appended."""
    key = str(folder_path)
    with _cache_mutex:
        uidlist = _UIDLIST_CACHE.get(key)
        if uidlist is None:
            uidlist = _UIDLIST_CACHE[key] = _UidList(folder_path)
            if len(_UIDLIST_CACHE) > _UIDLIST_CACHE_SIZE:
                _UIDLIST_CACHE.popitem(last=False)
        _UIDLIST_CACHE.move_to_end(key)
        return uidlist


# -- records -------------------------------------------------------------------

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
            data = _read_all(str(_current_path(self)))
        except (NotFound, FileNotFoundError):
            return 0, 0  # expunged meanwhile; not remembered
        sizes = len(data), _vsize(data)
        _uidlist_for(self.folder_path).remember_sizes(self.base, sizes)
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
                return os.stat(_current_path(self)).st_mtime
            except FileNotFoundError:
                continue
        raise NotFound(f"message {self.base} no longer exists in {self.folder_path}")


@dataclass
class Delivered:
    folder: str
    uid: int
    path: Path


@dataclass(frozen=True)
class FolderInfo:
    name: str
    special_use: str | None
    subscribed: bool
    has_children: bool


class Staged:
    """A message written to tmp/ and fsync'd, not yet visible."""

    def __init__(self, folder: "Folder", tmp_path: Path, base: str, flags: frozenset[str],
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
        if self.to_cur:
            dest = folder.path / "cur" / f"{self.base}:2,{folder._info(self.flags)}"
        else:
            dest = folder.path / "new" / self.base
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
            self.folder.maildir._quota_add(-self.size, -1)


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

    def commit(self, folder: "Folder", base: str, dirpath: Path, size: int, assign: bool = True) -> int:
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
                    records = folder._assign(wanted)[0] if wanted else {}
                    for e in batch:
                        e[3] = records[e[0]][0] if e[4] else 0
                    folder.maildir._quota_add(sum(e[2] for e in batch), len(batch))
                except BaseException as exc:
                    for e in batch:
                        if e[3] is None or e is entry:
                            e[3] = exc
                    raise
        if isinstance(entry[3], BaseException):
            raise entry[3]
        return entry[3]


_COMMIT_GROUPS: dict[str, _CommitGroup] = {}


def _group_for(folder_path: Path) -> _CommitGroup:
    key = str(folder_path)
    with _cache_mutex:
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


# -- the account ---------------------------------------------------------------

class Maildir:
    """One account's Maildir++ tree (INBOX = the top directory)."""

    def __init__(self, path: Path, top: Path | None = None):
        self.path = Path(path).absolute()
        # Below top no directory may be a symbolic link (nofollow); above it is the admin's
        # choice. An account's Maildir: the mail root; else the Maildir's own directory.
        self.top = Path(top).absolute() if top is not None else self.path.parent

    @classmethod
    def for_account(cls, root: Root, domain: str, local: str) -> "Maildir":
        for part in (domain, local):
            if not part or part in (".", "..") or "/" in part or "\0" in part:
                raise InvalidInput(f"{local}@{domain}: not a safe mailbox path component")
        return cls(root.mail_dir / domain / local, root.path)

    def __repr__(self) -> str:
        return f"Maildir({str(self.path)!r})"

    def exists(self) -> bool:
        try:
            nofollow.check_dirs(self.top, self.path / "cur")
        except FileNotFoundError:      # or a link on the way (LinkRefused)
            return False
        return True

    def create(self, folders: list[str] = DEFAULT_FOLDERS, quota_bytes: int = 0) -> None:
        """Make the tree (idempotent). An existing quota is changed only by a non-zero quota_bytes."""
        try:
            nofollow.check_dirs(self.top, self.path, missing_ok=True)
        except nofollow.LinkRefused:   # a MailError alone: servers answer it like a missing mailbox
            raise NotFound(f"mailbox {self.path.name}: a symbolic link inside the mail root (not "
                           f"followed); see 'mailctl config check'") from None
        created = not self.path.exists()
        for sub in ("cur", "new", "tmp"):
            (self.path / sub).mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if created:
            fsync_dir(self.path.parent)
        self.folder(INBOX)._ensure_uidlist()
        for name in folders:
            with contextlib.suppress(AlreadyExists):
                self.create_folder(name)
        self._update_subscriptions(add=[canonical_name(n) for n in folders])
        if not (self.path / MAILDIRSIZE).exists() or (quota_bytes and quota_bytes != self.quota_limit()):
            self.set_quota(quota_bytes)

    # -- folders --
    def folder(self, name: str) -> "Folder":
        name, path = self._locate(name)
        if name == INBOX:
            if not self.exists() or not nofollow.is_folder(self.top, path):
                raise NotFound(f"{self.path}: no such mailbox; create the account first")
        elif not nofollow.is_folder(self.top, path):
            raise NotFound(f"folder {name!r} does not exist")
        return Folder(self, name, path)

    def _locate(self, name: str) -> tuple[str, Path]:
        """A folder's canonical name and directory, without touching the disk."""
        comps = _split_name(name)
        if comps == [INBOX]:
            return INBOX, self.path
        return SEPARATOR.join(comps), self.path / _dirname(comps)

    def _folder_names(self) -> list[str]:
        names = []
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                    name = _name_from_dirname(entry.name)
                    if name is not None:
                        names.append(name)
        return sorted(names)

    def list_folders(self) -> list[FolderInfo]:
        names = self._folder_names()
        parents = {n.rsplit(SEPARATOR, 1)[0] for n in names if SEPARATOR in n}
        subscribed = set(self.subscriptions())
        return [FolderInfo(n, SPECIAL_USE.get(n), n in subscribed, n in parents)
                for n in [INBOX, *names]]

    def create_folder(self, name: str) -> "Folder":
        comps = _split_name(name, new=True)
        if comps == [INBOX]:
            raise AlreadyExists("INBOX always exists")
        self._make_parents(comps)
        self._make_folder_dir(comps)
        return self.folder(name)

    def _make_parents(self, comps: list[str]) -> None:
        for depth in range(1, len(comps)):
            if comps[:depth] == [INBOX]:    # always there; a ".INBOX" directory would be no folder
                continue
            with contextlib.suppress(AlreadyExists):
                self._make_folder_dir(comps[:depth])

    def _make_folder_dir(self, comps: list[str]) -> None:
        """Build the folder in tmp/ and rename it into place, so it appears complete."""
        target = self.path / _dirname(comps)
        if os.path.lexists(target):
            raise AlreadyExists(f"folder {SEPARATOR.join(comps)!r} already exists")
        staging = self.path / "tmp" / f".newfolder.{os.getpid()}.{secrets.token_hex(6)}"
        try:
            staging.mkdir(mode=DIR_MODE)
            for sub in ("cur", "new", "tmp"):
                (staging / sub).mkdir(mode=DIR_MODE)
            (staging / "maildirfolder").touch(mode=FILE_MODE)
            _UidList(staging).rewrite(self._new_uidlist_header(), {})
            os.rename(staging, target)
        except OSError as e:
            shutil.rmtree(staging, ignore_errors=True)
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise AlreadyExists(f"folder {SEPARATOR.join(comps)!r} already exists") from None
            raise
        fsync_dir(self.path)

    def _new_uidlist_header(self) -> dict[str, str]:
        return {"V": str(self._next_uidvalidity()), "N": "1", "G": secrets.token_hex(16)}

    def _next_uidvalidity(self) -> int:
        """Dovecot's scheme: a hex counter in dovecot-uidvalidity, at least the current time."""
        with dir_lock(self.path):
            current = _read_hex(self.path / UIDVALIDITY)
            value = max(current + 1, int(time.time()))
            atomic_write(self.path / UIDVALIDITY, f"{value:08x}", mode=FILE_MODE)
            marker = self.path / f"{UIDVALIDITY}.{value:08x}"
            try:
                os.rename(self.path / f"{UIDVALIDITY}.{current:08x}", marker)
            except FileNotFoundError:
                marker.touch(mode=FILE_MODE)
            return value

    def rename_folder(self, old: str, new: str) -> None:
        """Rename a folder and its children, as Dovecot does."""
        old_comps, new_comps = _split_name(old), _split_name(new, new=True)
        if old_comps == [INBOX]:
            raise InvalidInput("renaming INBOX is not supported; move its messages instead")
        if new_comps == [INBOX]:
            raise AlreadyExists("INBOX always exists")
        old_dir, new_dir = _dirname(old_comps), _dirname(new_comps)
        if new_comps[:len(old_comps)] == old_comps:
            raise InvalidInput(f"cannot rename {old!r} into itself ({new!r})")
        if not nofollow.is_folder(self.top, self.path / old_dir):
            raise NotFound(f"folder {old!r} does not exist")
        moves = [(old_dir, new_dir)] + [(d, new_dir + d[len(old_dir):]) for d in self._dirs_under(old_dir)]
        for _, target in moves:
            if os.path.lexists(self.path / target):
                raise AlreadyExists(f"folder {_name_from_dirname(target) or target!r} already exists")
        self._make_parents(new_comps)
        for source, target in moves:
            os.rename(self.path / source, self.path / target)
        fsync_dir(self.path)
        old_name, new_name = SEPARATOR.join(old_comps), SEPARATOR.join(new_comps)
        with tolerate_storage_faults():         # the folder has moved: that is the rename
            self._update_subscriptions(rename=(old_name, new_name))

    def _dirs_under(self, dirname: str) -> list[str]:
        return sorted(e for e in os.listdir(self.path) if e.startswith(dirname + "."))

    def delete_folder(self, name: str) -> None:
        comps = _split_name(name)
        if comps == [INBOX]:
            raise InvalidInput("INBOX cannot be deleted")
        folder = self.folder(name)
        dirname = _dirname(comps)
        if self._dirs_under(dirname):
            raise InvalidInput(f"folder {folder.name!r} has subfolders; delete them first")
        nbytes, count = _usage_of([folder.path])
        # Rename out of sight first, so readers never see a half-deleted folder.
        doomed = self.path / "tmp" / f".deleted.{os.getpid()}.{secrets.token_hex(6)}"
        os.rename(folder.path, doomed)
        fsync_dir(self.path)
        shutil.rmtree(doomed, ignore_errors=True)
        with tolerate_storage_faults():         # the folder is gone: that is the delete
            self._quota_add(-nbytes, -count)
            self._update_subscriptions(remove=[folder.name])

    # -- subscriptions (Dovecot's "V\t2" file: names with components joined by TAB) --
    def subscriptions(self) -> list[str]:
        try:
            text = nofollow.read_text(self.path / SUBSCRIPTIONS, "replace")
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        if lines[0].startswith("V\t"):
            lines = lines[2:] if len(lines) > 1 and lines[1] == "" else lines[1:]
            sep = "\t"
        else:
            sep = SEPARATOR  # version 1: one name per line
        names: list[str] = []
        for line in lines:
            if not line:
                continue
            try:
                name = canonical_name(SEPARATOR.join(mutf7.decode(c) for c in line.split(sep)))
            except InvalidInput:
                continue
            if name not in names:
                names.append(name)
        return names

    def subscribe(self, name: str) -> None:
        self._update_subscriptions(add=[canonical_name(name)])

    def unsubscribe(self, name: str) -> None:
        self._update_subscriptions(remove=[canonical_name(name)])

    def _update_subscriptions(self, add: Iterable[str] = (), remove: Iterable[str] = (),
                              rename: tuple[str, str] | None = None) -> None:
        with dir_lock(self.path):
            before = self.subscriptions()
            names = [n for n in before if n not in set(remove)]
            if rename:
                old, new = rename
                names = [new + n[len(old):] if n == old or n.startswith(old + SEPARATOR) else n
                         for n in names]
            names += [n for n in add if n not in names]
            if names == before and (self.path / SUBSCRIPTIONS).exists():
                return
            lines = ["\t".join(mutf7.encode(c) for c in n.split(SEPARATOR)) + "\n" for n in names]
            atomic_write(self.path / SUBSCRIPTIONS, "V\t2\n\n" + "".join(lines), mode=FILE_MODE)

    # -- quota (maildirsize) --
    def _read_maildirsize(self) -> tuple[int, int, int, int, os.stat_result] | None:
        """(limit bytes, limit count, used bytes, used count, stat), None if missing or bad."""
        try:
            with os.fdopen(nofollow.open_file(self.path / MAILDIRSIZE), "rb") as f:
                st = os.fstat(f.fileno())
                lines = f.read().decode("ascii", "replace").split("\n")
            limits = _parse_quota_header(lines[0])
            used = [0, 0]
            for line in lines[1:]:
                if line.strip():
                    nbytes, count = line.split()
                    used[0] += int(nbytes)
                    used[1] += int(count)
        except (FileNotFoundError, ValueError):
            return None
        return limits[0], limits[1], used[0], used[1], st

    def _recalc_quota(self, limit_bytes: int | None = None, limit_count: int = 0) -> tuple[int, int]:
        if limit_bytes is None:
            current = self._read_maildirsize()
            limit_bytes, limit_count = (current[0], current[1]) if current else (0, 0)
        nbytes, count = _usage_of([self.path] + [self.path / d for d in self._all_folder_dirs()])
        atomic_write(self.path / MAILDIRSIZE, f"{limit_bytes}S,{limit_count}C\n{nbytes} {count}\n",
                     mode=FILE_MODE)
        return nbytes, count

    def _all_folder_dirs(self) -> list[str]:
        # Every folder counts, even one whose name we cannot show.
        return [e.name for e in os.scandir(self.path) if e.name.startswith(".")
                and e.name not in (".", "..") and e.is_dir(follow_symlinks=False)]

    def quota_usage(self) -> tuple[int, int]:
        current = self._read_maildirsize()
        if current is None or current[4].st_size >= MAILDIRSIZE_MAX or _quota_stale(current):
            return self._recalc_quota()
        return current[2], current[3]

    def quota_limit(self) -> int:
        """The limit is the header line; reading only it keeps delivery cheap."""
        try:
            with os.fdopen(nofollow.open_file(self.path / MAILDIRSIZE), "rb") as f:
                return _parse_quota_header(f.readline(128).decode("ascii", "replace"))[0]
        except (FileNotFoundError, ValueError):
            return 0

    def set_quota(self, quota_bytes: int) -> None:
        if quota_bytes < 0:
            raise InvalidInput(f"quota {quota_bytes}: must be 0 (unlimited) or a number of bytes")
        current = self._read_maildirsize()
        self._recalc_quota(quota_bytes, current[1] if current else 0)

    def check_quota(self, size: int, limit: int | None = None) -> None:
        """limit: the account's quota when the caller knows it (the directory is the truth);
        None reads it from maildirsize."""
        if limit is None:
            limit = self.quota_limit()
        if not limit:
            return
        used, _ = self.quota_usage()
        if used + size > limit:
            raise QuotaExceeded(f"{self.path}: over quota: used {used} of {limit} bytes; "
                                f"a message of {size} bytes does not fit")

    def _quota_add(self, nbytes: int, count: int) -> None:
        """Append one delta line (one O_APPEND write, so concurrent writers never mix)."""
        try:
            fd = nofollow.open_file(self.path / MAILDIRSIZE, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            self._recalc_quota()
            return
        try:
            os.write(fd, f"{nbytes} {count}\n".encode())
            too_big = os.fstat(fd).st_size >= MAILDIRSIZE_MAX
        finally:
            os.close(fd)
        if too_big:
            self._recalc_quota()

    # -- messages --
    def stage(self, data: bytes, folder: str = INBOX, flags: Iterable[str] = (),
              internaldate: float | None = None, check_quota: bool = True,
              assign_uid: bool = True, quota_bytes: int | None = None) -> Staged:
        flag_set = _normalize_flags(flags)
        if check_quota:
            self.check_quota(len(data), quota_bytes)
        base = _unique_base(len(data), _vsize(data))
        name, path = self._locate(folder)
        tmp = path / "tmp" / base
        try:
            # the open is the existence check (O_EXCL follows no link); no directory on the
            # way may be a link: a few lstat() calls, no more
            nofollow.check_folder(self.top, path)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            target = Folder(self, name, path, complete=True)
        except FileNotFoundError:             # a link on the way (LinkRefused) too
            target = self.folder(folder)      # NotFound, or a half-made folder completed
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            try:
                # plain os.write: no buffered file object (fewer syscalls, each one a GIL handoff)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if internaldate is not None:
                os.utime(tmp, (internaldate, internaldate))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        staged = Staged(target, tmp, base, flag_set, len(data), to_cur=bool(flag_set))
        staged.assign_uid = assign_uid
        return staged

    def stage_file(self, path: Path, size: int, vsize: int, folder: str = INBOX, flags: Iterable[str] = (),
                   internaldate: float | None = None, quota_bytes: int | None = None) -> Staged:
        """A message already written and fsync'd in this account's tmp/ (engine/spool.py),
        staged under its Maildir name without another copy; commit() renames it into place."""
        flag_set = _normalize_flags(flags)
        self.check_quota(size, quota_bytes)
        target = self.folder(folder)
        if internaldate is not None:
            os.utime(path, (internaldate, internaldate))
        return Staged(target, path, _unique_base(size, vsize), flag_set, size, to_cur=bool(flag_set))

    def deliver(self, data: bytes, folder: str = INBOX, flags: Iterable[str] = (),
                internaldate: float | None = None, check_quota: bool = True) -> Delivered:
        staged = self.stage(data, folder, flags, internaldate, check_quota)
        try:
            return staged.commit()
        except BaseException:
            staged.abort()
            raise

    def resync(self) -> None:
        """Rebuild every folder's uidlist (keeping UIDs) and the quota from the files."""
        self.folder(INBOX)._rebuild()
        for name in self._folder_names():
            self.folder(name)._rebuild()
        self._recalc_quota()


def _read_hex(path: Path) -> int:
    try:
        return int(nofollow.read_text(path).strip() or "0", 16)
    except (FileNotFoundError, ValueError):
        return 0


def _parse_quota_header(line: str) -> tuple[int, int]:
    limit_bytes = limit_count = 0
    for part in line.strip().split(","):
        if part.endswith("S"):
            limit_bytes = int(part[:-1])
        elif part.endswith("C"):
            limit_count = int(part[:-1])
        else:
            raise ValueError(part)
    return limit_bytes, limit_count


def _quota_stale(current: tuple) -> bool:
    limit, _, used, count, st = current
    if used < 0 or count < 0:
        return True
    # An over-quota verdict from an old file is checked again before it refuses mail.
    return bool(limit) and used > limit and time.time() - st.st_mtime > MAILDIRSIZE_STALE_SECS


def _usage_of(folder_paths: list[Path]) -> tuple[int, int]:
    nbytes = count = 0
    for folder in folder_paths:
        for sub in ("cur", "new"):
            directory = folder / sub
            try:
                names = nofollow.list_files(folder, sub)
            except FileNotFoundError:          # or a link (LinkRefused): not counted
                continue
            for name in names:
                if name.startswith("."):
                    continue
                size, _ = _sizes_from(name.partition(":")[0], "")
                if size is None:
                    try:
                        size = os.lstat(directory / name).st_size
                    except FileNotFoundError:
                        continue
                nbytes += size
                count += 1
    return nbytes, count


# -- flags -----------------------------------------------------------------------

def _normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags spelled canonically; keywords checked as IMAP atoms."""
    if isinstance(flags, str):
        raise InvalidInput(f"flags must be a collection of names, not the string {flags!r}")
    out = set()
    for flag in flags:
        canonical = _FLAG_BY_LOWER.get(flag.lower())
        if canonical:
            out.add(canonical)
        elif flag.startswith("\\"):
            raise InvalidInput(f"{flag}: not a storable system flag; use one of "
                               f"{', '.join(sorted(FLAG_LETTERS))} or a keyword")
        elif not flag or any(ord(c) <= 0x20 or ord(c) >= 0x7F or c in _KEYWORD_BAD_CHARS for c in flag):
            raise InvalidInput(f"{flag!r}: not a valid IMAP keyword (an atom of printable ASCII)")
        else:
            out.add(flag)
    return frozenset(out)


# System flags other than $Forwarded (stored as a letter and a keyword), and the letters
# of sets of them.
_SYSTEM_FLAGS = frozenset(FLAG_LETTERS) - {FORWARDED}
_SYSTEM_INFOS: dict[frozenset[str], str] = {}

_KEYWORDS_CACHE: dict[Path, tuple[tuple, dict[int, str]]] = {}
_KEYWORDS_CACHE_SIZE = 256


def _read_keywords(folder_path: Path) -> dict[int, str]:
    """index -> keyword from dovecot-keywords; parsed again only when the file's inode,
    size or mtime changed (it is replaced by rename), so a STORE on many messages costs
    one stat() per message. Returns a fresh dict the caller may change."""
    path = folder_path / KEYWORDS
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {}
    ident = (st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _KEYWORDS_CACHE.get(folder_path)
    if cached is not None and cached[0] == ident:
        return dict(cached[1])
    try:
        text = nofollow.read_text(path, "replace")
    except FileNotFoundError:      # or a link (LinkRefused): no keywords
        return {}
    keywords = {}
    for line in text.splitlines():
        index, _, name = line.partition(" ")
        if index.isdigit() and int(index) < MAX_KEYWORDS and name:
            keywords[int(index)] = name
    if len(_KEYWORDS_CACHE) >= _KEYWORDS_CACHE_SIZE:
        _KEYWORDS_CACHE.clear()
    _KEYWORDS_CACHE[folder_path] = (ident, keywords)
    return dict(keywords)


# -- one folder --------------------------------------------------------------------

class Folder:
    def __init__(self, maildir: Maildir, name: str, path: Path, complete: bool = False):
        """complete: the caller has just used the folder's tmp/ (no need to look)."""
        self.maildir = maildir
        self.name = name
        self.path = path
        self.special_use = SPECIAL_USE.get(name)
        self._uidlist = _uidlist_for(path)
        if not complete and not os.path.isdir(path / "tmp"):  # made by hand or half-made: complete it
            for sub in ("cur", "new", "tmp"):
                (path / sub).mkdir(mode=DIR_MODE, exist_ok=True)

    def __repr__(self) -> str:
        return f"Folder({self.name!r}, {str(self.path)!r})"

    def _lock(self) -> DotLock:
        return DotLock(self.path / (UIDLIST + ".lock"))

    # -- uidlist --
    def _ensure_uidlist(self) -> _UidList:
        uidlist = self._uidlist
        uidlist.refresh()
        if not uidlist.exists:
            with self._lock():
                uidlist.refresh()
                if not uidlist.exists:
                    uidlist.rewrite(self.maildir._new_uidlist_header(), {})
        return uidlist

    def uidvalidity(self) -> int:
        return self._ensure_uidlist().uidvalidity

    def uidnext(self) -> int:
        return self._ensure_uidlist().next_uid

    def _assign(self, bases: list[str], listing: dict[str, tuple[str, str]] | None = None,
                sizes: bool = True) -> tuple[dict[str, tuple[int, str]], list[str]]:
        """Give UIDs to bases not yet listed (appending records); return the records and
        the bases numbered now, in UID order (above every UID given before).
        sizes=False: no S/W keys for names without ,S=/,W= (no file is read)."""
        uidlist = self._uidlist
        with self._lock():             # refreshed (and created if missing) under the lock
            uidlist.refresh()
            if not uidlist.exists:
                uidlist.rewrite(self.maildir._new_uidlist_header(), {})
            records = uidlist.records
            # A list in listing order, not a set: sorting strings in hash order costs twice
            # as much (they lie scattered in memory). The bases are distinct.
            fresh = _delivery_order([b for b in bases if b not in records] if records else bases)
            if fresh:
                uidlist.append(uidlist.next_uid, fresh,
                               [self._size_keys(base, listing) for base in fresh] if sizes else None)
            return uidlist.records, fresh

    def _size_keys(self, base: str, listing: dict[str, tuple[str, str]] | None = None) -> str:
        """S/W record keys for a file whose name lacks ,S=/,W= (read once, as Dovecot does)."""
        size, vsize = _sizes_from(base, "")
        if size is not None and vsize is not None:
            return ""
        located = listing.get(base) if listing else self._locate(base)
        for _ in range(2):
            if located is None:
                return ""
            try:
                data = _read_all(f"{self.path}/{located[0]}/{located[1]}")
                return f"S{len(data)} W{_vsize(data)}"
            except FileNotFoundError:
                located = self._locate(base)  # renamed by a flag change meanwhile
        return ""

    def _save_sizes_when_due(self, uidlist: "_UidList", count: int) -> None:
        if len(uidlist.unsaved) >= max(SAVE_SIZES_BATCH, count // 10):
            self._save_sizes()

    def save_measured_sizes(self) -> None:
        """After a command that measured many sizes (an IMAP client's first RFC822.SIZE
        of a folder): save them now, so another process's sync (a POP3 login) finds them
        in the uidlist instead of reading every file, and need not wait for our next sync."""
        uidlist = self._uidlist
        self._save_sizes_when_due(uidlist, len(uidlist.records))

    def _save_sizes(self) -> None:
        """Sizes measured on first use into their records (S/W keys, as Dovecot writes
        them): other processes and later syncs then know them without reading files."""
        uidlist = self._uidlist
        with self._lock():
            generation = uidlist.generation
            uidlist.refresh()
            bases, uidlist.unsaved = uidlist.unsaved, set()
            records = dict(uidlist.records)
            for base in bases:
                record, sizes = records.get(base), uidlist.sizes.get(base)
                if record is not None and sizes is not None and not record[1]:
                    records[base] = (record[0], f"S{sizes[0]} W{sizes[1]}")
            if records != uidlist.records:
                header = dict(uidlist.header)
                header["N"] = str(uidlist.next_uid)
                last = uidlist.last_sync
                try:
                    uidlist.rewrite(header, records)
                except StorageError:            # a full disk: the sizes wait for a later save
                    uidlist.unsaved |= bases
                    return
                # Only keys were added, UIDs are as they were: the last sync's result still
                # holds (unless the refresh above found another writer's rewrite), so the
                # next sync may patch it instead of listing 100,000 files afresh.
                if last is not None and last.generation == generation == uidlist.generation - 1:
                    uidlist.last_sync = last._replace(generation=uidlist.generation)

    def _forget(self, bases: Iterable[str]) -> None:
        """Drop records of files that are gone (rename-replace; next_uid is kept)."""
        uidlist = self._uidlist
        with self._lock():
            uidlist.refresh()
            doomed = set(bases) & uidlist.records.keys()
            for base in doomed:
                uidlist.sizes.pop(base, None)
            if not doomed:
                return
            header = dict(uidlist.header)
            header["N"] = str(uidlist.next_uid)
            kept = {b: r for b, r in uidlist.records.items() if b not in doomed}
            with tolerate_storage_faults():     # a record without a file harms no reader
                uidlist.rewrite(header, kept)

    def _rebuild(self) -> None:
        uidlist = self._ensure_uidlist()
        with self._lock():
            uidlist.refresh()
            listing = self._scan()
            header = dict(uidlist.header) if uidlist.exists else self.maildir._new_uidlist_header()
            header["N"] = str(uidlist.next_uid)
            records = {b: r for b, r in uidlist.records.items() if b in listing}
            uid = uidlist.next_uid
            for base in _delivery_order(listing.keys() - records.keys()):
                records[base] = (uid, self._size_keys(base, listing))
                uid += 1
            header["N"] = str(uid)
            uidlist.rewrite(header, records)

    # -- directory scan --
    def _scan(self) -> dict[str, tuple[str, str]]:
        """base -> (subdir, filename). new/ first: a file moving to cur/ meanwhile is still seen."""
        found: dict[str, tuple[str, str]] = {}
        for sub in ("new", "cur"):
            for name in nofollow.list_files(self.path, sub):
                if name[0] != ".":
                    found[name.partition(":")[0]] = (sub, name)
        return found

    def _locate(self, base: str) -> tuple[str, str] | None:
        return _locate(self.path, base)

    def sync(self, sizes: bool = True) -> list[Message]:
        """Messages by UID: directory listing plus uidlist; new files get UIDs.

        Message objects of unchanged files are reused from the last sync, so a sync
        of a large, quiet folder is two listdir() calls and dictionary lookups, and
        none at all while new/, cur/ and the uidlist keep the stamp of a settled sync.
        sizes=False: files named without sizes are not read now, but when a size of
        theirs is first asked for (an IMAP SELECT of a folder filled by other tools).
        """
        return self._sync(sizes, None)[1]

    def sync_quietly(self, max_new: int) -> tuple[tuple | None, list[Message]] | None:
        """A sync for a background refresh: it reads no message file (as sizes=False),
        and when more than max_new files would need UIDs (a bulk fill, left to the first
        client that opens the folder) it gives none and returns None. Else (the folder's
        stamp taken before the listing, None if it was not settled; the messages)."""
        return self._sync(False, max_new)

    def _sync(self, sizes: bool, max_new: int | None) -> tuple[tuple | None, list[Message]] | None:
        stamp, newest = folder_stamp(self.path)       # before the listing: a later change shows
        settled = time.time() - newest > MTIME_SLACK
        with self._uidlist.sync_gate:
            uidlist = self._ensure_uidlist()
            keywords = self._keywords_ident()
            last = uidlist.last_sync
            if (last is not None and last.stamp == stamp and last.generation == uidlist.generation
                    and last.keywords == keywords and (last.sized or not sizes)):
                return stamp, list(last.result)
            stamp = stamp if settled else None
            listing = {sub: nofollow.list_files(self.path, sub) for sub in ("new", "cur")}   # new/ first
            patched = self._sync_changes(uidlist, keywords, sizes, listing, stamp, max_new)
            if patched is _DECLINED:
                return None
            if patched is None:
                patched = self._full_sync(uidlist, keywords, sizes, listing, stamp, max_new)
                return None if patched is None else (stamp, patched)
            self._save_sizes_when_due(uidlist, len(patched))
            return stamp, patched

    def _full_sync(self, uidlist: "_UidList", keywords: tuple, sizes: bool, listing: dict[str, list[str]],
                   stamp: tuple | None, max_new: int | None) -> list[Message] | None:
        records = uidlist.records
        generation = uidlist.generation
        cache = uidlist.message_cache(keywords)
        builder = _MessageBuilder(self, sizes)
        found: dict[str, Message] = {}
        unknown: dict[str, tuple[str, str]] = {}
        # new/ first: a file moving to cur/ meanwhile is still seen.
        for sub in ("new", "cur"):
            known = cache[sub]
            if not known and not records:     # a first sync: every file waits for a UID
                unknown.update({n.partition(":")[0]: (sub, n) for n in listing[sub] if n[:1] != "."})
                continue
            for name in listing[sub]:
                msg = known.get(name)
                if msg is not None and records.get(msg.base, (0,))[0] == msg.uid and (
                        msg._vsize is not None or not sizes):
                    found[msg.base] = msg
                    continue
                _place(sub, name, records, builder, found, unknown)
        if max_new is not None and len(unknown) > max_new:
            return None
        if len(found) < len(records):
            self._recheck_missing(records, found, unknown, builder)
        result = sorted(found.values(), key=_by_uid)
        if unknown:
            result += self._give_uids(unknown, builder, found, sizes)
            if len(found) > len(result):       # numbered by another process meanwhile
                result = sorted(found.values(), key=_by_uid)
        uidlist.keep_messages(result)
        if uidlist.generation == generation and len(result) == sum(len(n) for n in listing.values()):
            sized = sizes or all(m._vsize is not None for m in result)
            uidlist.last_sync = _LastSync(generation, keywords, sized,
                                          {sub: frozenset(names) for sub, names in listing.items()},
                                          result, stamp)
        self._save_sizes_when_due(uidlist, len(records))
        return list(result)

    messages = sync

    def _give_uids(self, unknown: dict[str, tuple[str, str]], builder: "_MessageBuilder",
                   found: dict[str, Message], sizes: bool) -> list[Message]:
        """UIDs for the unknown files. Returns the Messages of those numbered now, in UID
        order (above every message in found), and adds them to found; files another
        process numbered meanwhile go into found alone (their UIDs may be lower).
        On a full or read-only disk none is numbered: they wait, unseen, for a sync that
        can write, and the messages that have UIDs can still be read."""
        try:
            records, fresh = self._assign(list(unknown), unknown, sizes)
        except StorageError:
            return []
        make = builder.make
        numbered = builder.make_numbered(fresh, unknown, records)
        if len(fresh) < len(unknown):
            for base, (sub, name) in unknown.items():
                if base not in found:
                    found[base] = make(base, sub, name, records[base])
        found.update(zip(fresh, numbered))
        return numbered

    def _sync_changes(self, uidlist: "_UidList", keywords: tuple, sizes: bool,
                      listing: dict[str, list[str]], stamp: tuple | None,
                      max_new: int | None) -> list[Message] | None:
        """The last sync's result patched with what changed in the listing since: a file
        renamed by another process (flags), new mail, a file gone. None when it cannot be
        patched (uidlist rewritten, keywords changed, sizes wanted but not all known, records of vanished
        files to look into): then the full sync runs. _DECLINED: more than max_new files
        need UIDs. At 100,000 messages this is set arithmetic on the names instead of a
        lookup per file."""
        last = uidlist.last_sync
        if last is None:
            return None
        generation, sized, last_names, result = last.generation, last.sized, last.names, last.result
        if generation != uidlist.generation or last.keywords != keywords or (sizes and not sized):
            return None
        limit = max(1000, len(result) // 4)     # past it, the full sync is no slower
        if abs(sum(map(len, listing.values())) - sum(map(len, last_names.values()))) > limit:
            return None                          # a bulk fill: no sets of 100,000 names to compare
        names = {sub: set(listing[sub]) for sub in ("new", "cur")}
        added = {sub: names[sub] - last_names[sub] for sub in names}
        removed = {sub: last_names[sub] - names[sub] for sub in names}
        if not any(added.values()) and not any(removed.values()):
            uidlist.last_sync = last._replace(stamp=stamp)
            return list(result)
        # Many changes (another process's STORE 1:*): the full sync is no slower.
        if sum(map(len, added.values())) + sum(map(len, removed.values())) > limit:
            return None
        records = uidlist.records
        builder = _MessageBuilder(self, sizes)
        fresh: dict[str, Message] = {}
        unknown: dict[str, tuple[str, str]] = {}
        for sub in ("new", "cur"):
            for name in added[sub]:
                _place(sub, name, records, builder, fresh, unknown)
        gone_bases = {name.partition(":")[0] for sub in removed for name in removed[sub]}
        if any(b in records and b not in fresh and b not in unknown for b in gone_bases):
            return None          # a record without its file: the full sync looks again, forgets
        if max_new is not None and len(unknown) > max_new:
            return _DECLINED
        if unknown:
            self._give_uids(unknown, builder, fresh, sizes)
            if uidlist.generation != generation or not unknown.keys() <= fresh.keys():
                return None      # numbered meanwhile, or not at all (a full disk): look again
        kept = [m for m in result if m.base not in fresh]      # a gone file returned None above
        merged = kept + sorted(fresh.values(), key=_by_uid)
        if kept and fresh and min(m.uid for m in fresh.values()) < kept[-1].uid:
            merged.sort(key=_by_uid)
        cache = {sub: dict(known) for sub, known in uidlist.message_cache(keywords).items()}
        for sub in removed:
            for name in removed[sub]:
                cache[sub].pop(name, None)
        for msg in fresh.values():
            cache[msg.subdir][msg.filename] = msg
        uidlist._messages = cache
        sized = sized and (sizes or all(m._vsize is not None for m in fresh.values()))
        uidlist.last_sync = _LastSync(generation, keywords, sized,
                                      {sub: frozenset(n) for sub, n in names.items()}, merged, stamp)
        return list(merged)

    def _recheck_missing(self, records: dict[str, tuple[int, str]], found: dict[str, Message],
                         unknown: dict[str, tuple[str, str]], builder: "_MessageBuilder") -> None:
        """Records without a file: look again (a rename during readdir can hide a file
        once), then forget those really gone."""
        missing = [b for b in records if b not in found and b not in unknown]
        if not missing:
            return
        again = self._scan()
        for base in missing:
            if base in again:
                sub, name = again[base]
                found[base] = builder.make(base, sub, name, records[base])
        gone = [b for b in missing if b not in found]
        if gone:
            self._forget(gone)

    def _keywords_ident(self) -> tuple:
        try:
            st = os.lstat(self.path / KEYWORDS)
        except FileNotFoundError:
            return ()
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _measure(self, sub: str, name: str, size: int | None, vsize: int | None) -> tuple[int, int] | None:
        """Sizes of a file named without ,S=/,W= and listed without S/W keys (rare: read
        it); None when the file is gone."""
        try:
            data = _read_all(f"{self.path}/{sub}/{name}")
        except FileNotFoundError:
            return None  # expunged or renamed meanwhile; the next sync sees it right
        return (len(data) if size is None else size), (_vsize(data) if vsize is None else vsize)

    # -- flags --
    def _letter_map(self) -> dict[str, str]:
        return {chr(ord("a") + i): name for i, name in _read_keywords(self.path).items()}

    def _info(self, flags: frozenset[str]) -> str:
        """The letters after ':2,' for a flag set, allocating keyword letters as needed."""
        letters = [FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS]
        # Dovecot ignores "P", so $Forwarded is also written as a keyword letter.
        keywords = sorted(f for f in flags if f not in FLAG_LETTERS or f == FORWARDED)
        if keywords:
            letters += self._keyword_letters(keywords)
        return "".join(sorted(letters))

    def bump_uidvalidity(self) -> int:
        """Start a new UIDVALIDITY and number every message afresh (after a restore that
        could make an old UID name another message); IMAP clients then resync cleanly."""
        with self._lock():
            self._uidlist.refresh()
            header = self.maildir._new_uidlist_header()
            listing = self._scan()
            records = {base: (i, "") for i, base in enumerate(_delivery_order(listing), 1)}
            header["N"] = str(len(records) + 1)
            self._uidlist.rewrite(header, records)
            return int(header["V"])

    def keyword_letters(self, keywords: list[str]) -> list[str]:
        """The letters of keywords in this folder, allocating new ones in dovecot-keywords."""
        return self._keyword_letters(keywords)

    def _keyword_letters(self, keywords: list[str]) -> list[str]:
        index = _keyword_index(_read_keywords(self.path))
        if any(k.lower() not in index for k in keywords):
            with self._lock():
                current = _read_keywords(self.path)
                for keyword in keywords:
                    if keyword.lower() not in _keyword_index(current):
                        free = [i for i in range(MAX_KEYWORDS) if i not in current]
                        if not free:
                            raise InvalidInput(f"{keyword}: this folder already has {MAX_KEYWORDS} "
                                               f"keywords, the most Maildir can store")
                        current[free[0]] = keyword
                text = "".join(f"{i} {name}\n" for i, name in sorted(current.items()))
                atomic_write(self.path / KEYWORDS, text, mode=FILE_MODE)
                index = _keyword_index(current)
        return [chr(ord("a") + index[k.lower()]) for k in keywords]

    def record_fields(self, key: str) -> dict[str, str]:
        """One extension field of every dovecot-uidlist record that has it, by base name
        (e.g. "P": the POP3 UIDL that Dovecot keeps for migrated mail)."""
        found = {}
        for base, (_, keys) in self._ensure_uidlist().records.items():
            if key in keys:
                for item in keys.split(" "):
                    if item[:1] == key and len(item) > 1:
                        found[base] = item[1:]
        return found

    def set_flags(self, msg: Message, flags: Iterable[str]) -> Message:
        """Replace the flag set: one rename to cur/<base>:2,<letters>."""
        # System flags alone (STORE 1:* +FLAGS (\\Seen) on 100,000 messages): their
        # letters need no keyword file, so they are worked out once per flag set.
        system = type(flags) is frozenset and flags <= _SYSTEM_FLAGS
        flag_set = flags if system else _normalize_flags(flags)
        info = _SYSTEM_INFOS.get(flag_set) if system else None
        if info is None:
            info = self._info(flag_set)
            if system and len(_SYSTEM_INFOS) < 256:
                _SYSTEM_INFOS[flag_set] = info
        sub, filename = msg.subdir, msg.filename
        for _ in range(5):
            old_info = filename[len(msg.base) + 1:]
            extra = old_info[2:].partition(",")[2] if old_info.startswith("2,") else ""
            new_name = f"{msg.base}:2,{info}" + ("," + extra if extra else "")
            # Plain strings, not Path objects: STORE 1:* renames every message of a folder.
            try:
                if sub != "cur" or filename != new_name:
                    os.rename(f"{self.path}/{sub}/{filename}", f"{self.path}/cur/{new_name}")
                if system:
                    return Message(msg.uid, msg.base, "cur", new_name, flag_set, msg._size, msg._vsize,
                                   msg.folder_path)
                # Keyword letters (a-z) need dovecot-keywords; system flag letters do not.
                letters = self._letter_map() if any("a" <= c <= "z" for c in info) else {}
                return Message(msg.uid, msg.base, "cur", new_name, _flags_from_info(
                    new_name[len(msg.base) + 1:], letters), msg._size, msg._vsize, msg.folder_path)
            except FileNotFoundError:
                located = self._locate(msg.base)  # renamed by someone else meanwhile
                if located is None:
                    break
                sub, filename = located
        raise NotFound(f"message UID {msg.uid} in {self.name!r} no longer exists")

    # -- reading --
    def open(self, msg: Message) -> BinaryIO:
        for _ in range(3):
            try:
                return os.fdopen(nofollow.open_file(_current_path(msg)), "rb")
            except FileNotFoundError:          # or a link (LinkRefused)
                continue
        raise NotFound(f"message UID {msg.uid} in {self.name!r} no longer exists")

    def read(self, msg: Message) -> bytes:
        with self.open(msg) as f:
            return f.read()

    def read_if_cached(self, msg: Message, max_bytes: int | None = None) -> bytes:
        """The message only if the kernel holds all of it in memory: a read that cannot
        wait for the disk (preadv with RWF_NOWAIT), so an event loop may do it itself
        instead of paying a hop to a worker thread. BlockingIOError when the file, or part
        of it, would come from disk, or it moved, or it is larger than max_bytes (what
        the caller does with it would hold the loop): then read() it in a worker thread."""
        try:
            fd = nofollow.open_file(f"{self.path}/{msg.subdir}/{msg.filename}")
        except FileNotFoundError:
            raise BlockingIOError("moved") from None
        try:
            size = msg._size if msg._size is not None else os.fstat(fd).st_size
            if max_bytes is not None and size > max_bytes:
                raise BlockingIOError("large")
            buf = bytearray(size + 1)          # one byte more: a file longer than we thought shows
            try:
                got = os.preadv(fd, [buf], 0, os.RWF_NOWAIT)
            except OSError as e:
                if e.errno != errno.EOPNOTSUPP:
                    raise
                raise BlockingIOError("no RWF_NOWAIT here") from None   # tmpfs, some kernels
            if got != size:
                raise BlockingIOError("short read")
            return bytes(memoryview(buf)[:got])
        finally:
            os.close(fd)

    # -- changes --
    def expunge(self, msgs: Iterable[Message]) -> None:
        removed_bases, nbytes, count = [], 0, 0
        for msg in msgs:
            if not self._unlink(msg):
                continue
            removed_bases.append(msg.base)
            nbytes += msg.size
            count += 1
        if not removed_bases:
            return
        for sub in ("new", "cur"):
            fsync_dir(self.path / sub)
        self._forget(removed_bases)
        with tolerate_storage_faults():         # the files are gone: that is the expunge
            self.maildir._quota_add(-nbytes, -count)

    def _unlink(self, msg: Message) -> bool:
        """Unlink a message even if it is being renamed (flag change) meanwhile."""
        for _ in range(5):
            try:
                os.unlink(_current_path(msg))
                return True
            except NotFound:
                return False
            except FileNotFoundError:
                continue
        return False

    def copy_to(self, msg: Message, dest: "Folder") -> Delivered:
        dest.maildir.check_quota(msg.size)
        return self._copy(msg, dest)

    def _copy(self, msg: Message, dest: "Folder") -> Delivered:
        """Hard link (fallback: copy with the same mtime) into dest tmp/, then commit to cur/."""
        base = _unique_base(msg.size, msg.vsize)
        tmp = dest.path / "tmp" / base
        src = _current_path(msg)
        try:
            os.link(src, tmp)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            _copy_file(src, tmp, msg.mtime)
        return Staged(dest, tmp, base, msg.flags, msg.size, to_cur=True).commit()

    def move_to(self, msg: Message, dest: "Folder") -> Delivered:
        delivered = self._copy(msg, dest)
        self.expunge([msg])
        return delivered

    def status(self) -> dict:
        msgs = self.sync()
        return {
            "messages": len(msgs),
            "unseen": sum(1 for m in msgs if "\\Seen" not in m.flags),
            "recent": sum(1 for m in msgs if m.subdir == "new"),
            "size": sum(m.size for m in msgs),
            "uidnext": self.uidnext(),
            "uidvalidity": self.uidvalidity(),
        }


class _MessageBuilder:
    """Makes Message objects for one sync, sharing parsed flag sets."""

    def __init__(self, folder: Folder, sizes: bool = True):
        self.folder = folder
        self.sizes = sizes  # read files whose sizes are unknown now (else on first use)
        self._letters: dict[str, str] | None = None
        self._flags: dict[str, frozenset[str]] = {}
        self._known_sizes = folder._uidlist.sizes     # measured here before (see Message)
        self._path = folder.path

    def make(self, base: str, sub: str, name: str, record: tuple[int, str]) -> Message:
        info = name[len(base) + 1:]
        flags = self._flags.get(info)
        if flags is None:
            if self._letters is None:
                self._letters = self.folder._letter_map()
            flags = self._flags[info] = _flags_from_info(info, self._letters)
        keys = record[1]
        # Names from other tools carry no sizes, and neither do records a first SELECT
        # wrote: the usual case at 100,000 files, so it skips the parse.
        size, vsize = _sizes_from(base, keys) if keys or "," in base else (None, None)
        if size is None or vsize is None:
            known = self._known_sizes.get(base)
            if known is not None:
                size, vsize = known
            elif self.sizes:
                measured = self.folder._measure(sub, name, size, vsize)
                if measured is None:
                    size, vsize = size or 0, vsize or 0
                else:
                    size, vsize = measured
                    if not keys:
                        self.folder._uidlist.remember_sizes(base, measured)
        return Message(record[0], base, sub, name, flags, size, vsize, self._path)

    def make_numbered(self, bases: list[str], listed: dict[str, tuple[str, str]],
                      records: dict[str, tuple[int, str]]) -> list[Message]:
        """make() for the files just numbered (bases in UID order, consecutive UIDs).
        A file another tool dropped into new/ (no flags, no sizes in its name, none
        known, none to read now) is made without looking it up again by name: at
        100,000 files of a bulk fill the lookups cost more than the Messages."""
        make = self.make
        first = records[bases[0]][0] if bases else 0
        if not bases or self.sizes or records[bases[-1]] != (first + len(bases) - 1, ""):
            return [make(base, *listed[base], records[base]) for base in bases]
        odd = {base for base, (sub, name) in listed.items() if sub != "new" or name != base}
        known, path = self._known_sizes, self._path
        return [make(base, *listed[base], records[base]) if base in odd or "," in base or base in known
                else Message(uid, base, "new", base, _NO_FLAGS, None, None, path)
                for uid, base in zip(range(first, first + len(bases)), bases)]


_NO_FLAGS: frozenset[str] = frozenset()


def _place(sub: str, name: str, records: dict[str, tuple[int, str]], builder: _MessageBuilder,
           found: dict[str, Message], unknown: dict[str, tuple[str, str]]) -> None:
    """A listed file: its Message when it has a uidlist record, else it waits for a UID.
    Dot files are not messages."""
    if name[0] == ".":
        return
    base = name.partition(":")[0]
    record = records.get(base)
    if record is None:
        unknown[base] = (sub, name)
    else:
        found[base] = builder.make(base, sub, name, record)


def _locate(folder_path: Path, base: str) -> tuple[str, str] | None:
    """(subdir, filename) of the message with this base name, wherever its flags put it."""
    for sub in ("new", "cur"):
        for name in nofollow.list_files(folder_path, sub):
            if name.partition(":")[0] == base:
                return sub, name
    return None


def _current_path(msg: Message) -> Path:
    path = msg.path
    if path.exists():
        return path
    located = _locate(msg.folder_path, msg.base)
    if located is None:
        raise NotFound(f"message UID {msg.uid} in {msg.folder_path} no longer exists")
    return msg.folder_path / located[0] / located[1]


def _keyword_index(keywords: dict[int, str]) -> dict[str, int]:
    return {name.lower(): i for i, name in keywords.items()}


def _flags_from_info(info: str, letters: dict[str, str]) -> frozenset[str]:
    """Flags of an info part "2,<letters>[,<extra>]"; unknown letters are ignored."""
    if not info.startswith("2,"):
        return frozenset()
    flags = set()
    for letter in info[2:].partition(",")[0]:
        flag = _LETTER_FLAGS.get(letter) or letters.get(letter)
        if flag:
            flags.add(flag)
    return frozenset(flags)


def _copy_file(src: Path, dest: Path, mtime: float) -> None:
    with os.fdopen(nofollow.open_file(src), "rb") as fin, open(dest, "xb") as fout:
        try:
            shutil.copyfileobj(fin, fout)
            fout.flush()
            os.fsync(fout.fileno())
        except BaseException:
            os.unlink(dest)                      # a full disk: no half copy left in tmp/
            raise
    os.chmod(dest, FILE_MODE)
    os.utime(dest, (mtime, mtime))
