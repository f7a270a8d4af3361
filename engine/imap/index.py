"""A persistent, rebuildable per-folder index of the header metadata that FETCH and
SEARCH need (the usual header fields and the ENVELOPE), so a large folder is searched
and listed without opening every message file.

The file is `<folder>/mailctl-index` (Dovecot ignores files it does not know). It is a
cache and never the source of truth: message files never change once delivered, so an
entry keyed by the message's base name cannot go stale, and a missing, damaged or
foreign file is simply ignored and rebuilt from the messages.

Format: the line MAGIC, then records
    "<I crc32><I len(base)><I len(fields)><I len(envelope)>" base fields envelope
where crc32 covers the three payloads. New entries are appended with one write() on an
O_APPEND descriptor per batch, so concurrent writers never interleave records on a local
file system; a torn or garbled record ends the readable part, and the next write rewrites
the whole file (temp file + rename). A rewrite (after damage, or to drop entries of
expunged messages) may lose entries another process appended to the old file at that
moment; they are rebuilt when next needed.
"""
from __future__ import annotations

import os
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass

from . import mime
from .response import encode

FILENAME = "mailctl-index"
MAGIC = b"mailctl-index 1\n"
_RECORD = struct.Struct("<IIII")
MAX_PAYLOAD = 1 << 20            # a larger length means a damaged record
BUDGET_BYTES = 192 * 1024 * 1024  # all folders' entries held in memory by one process

# The fields clients fetch for message lists (Thunderbird, mutt, Apple Mail...) and the
# ENVELOPE and SEARCH keys need. HEADER.FIELDS within this set is served from the index.
INDEXED = frozenset({
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "in-reply-to", "references",
    "reply-to", "sender", "content-type", "priority", "x-priority", "importance", "newsgroups",
    "list-post", "list-id", "x-mailer", "user-agent", "return-path", "delivered-to",
    "mime-version", "content-transfer-encoding", "disposition-notification-to", "x-spam-flag",
    "x-spam-status", "auto-submitted", "followup-to",
})


@dataclass(slots=True)
class Entry:
    fields: bytes    # the INDEXED fields as raw CRLF lines in message order, then CRLF
    envelope: bytes  # the encoded ENVELOPE

    def part(self) -> mime.Part:
        return mime.Part(self.fields, 0, len(self.fields))


def entry_from_header(header_crlf: bytes) -> Entry:
    """The index entry of a message, from its CRLF header (the file is the truth)."""
    full = mime.Part(header_crlf, 0, len(header_crlf))
    fields = mime.section_bytes(full, [], "HEADER.FIELDS", sorted(INDEXED))
    return Entry(fields, encode(mime.envelope(mime.Part(fields, 0, len(fields)))))


def covers(names) -> bool:
    """Whether header fields of these names are all in the index."""
    return all(n.lower() in INDEXED for n in names)


def _pack(base: str, entry: Entry) -> bytes:
    b = base.encode("utf-8", "surrogateescape")
    crc = zlib.crc32(entry.envelope, zlib.crc32(entry.fields, zlib.crc32(b)))
    return _RECORD.pack(crc, len(b), len(entry.fields), len(entry.envelope)) + b + entry.fields + entry.envelope


def _parse(data: bytes, pos: int, out: dict[str, Entry]) -> tuple[int, bool]:
    """Records from data[pos:] into out; (end of the last good record, damaged?)."""
    size = _RECORD.size
    n = len(data)
    while pos < n:
        if pos + size > n:
            return pos, True
        crc, lb, lf, le = _RECORD.unpack_from(data, pos)
        start = pos + size
        end = start + lb + lf + le
        if lb > 4096 or lf > MAX_PAYLOAD or le > MAX_PAYLOAD or end > n:
            return pos, True
        b = data[start:start + lb]
        fields = data[start + lb:start + lb + lf]
        env = data[start + lb + lf:end]
        if zlib.crc32(env, zlib.crc32(fields, zlib.crc32(b))) != crc:
            return pos, True
        out[b.decode("utf-8", "surrogateescape")] = Entry(fields, env)
        pos = end
    return pos, False


class FolderIndex:
    """One folder's index file and this process's copy of its entries."""

    def __init__(self, folder_path):
        self.path = os.path.join(str(folder_path), FILENAME)
        self.entries: dict[str, Entry] = {}
        self.damaged = False     # the file needs a full rewrite before appending
        self._ident = None       # (st_dev, st_ino) of the file we read
        self._pos = 0            # how far we read it
        self.nbytes = 0
        self.lock = threading.Lock()

    # -- reading --
    def refresh(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            self._reset(damaged=True)
            return
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            if ident != self._ident or st.st_size < self._pos:
                self._reset(damaged=False)
                self._ident = ident
            if st.st_size == self._pos:
                return
            data = _read_from(fd, self._pos)
        finally:
            os.close(fd)
        pos = 0
        if self._pos == 0:
            if not data.startswith(MAGIC):
                self.damaged = True  # not ours or torn at birth: rebuilt on next write
                self._pos = len(data)
                return
            pos = len(MAGIC)
        end, bad = _parse(data, pos, self.entries)
        self.nbytes += end - pos
        if bad:
            self.damaged = True
            self._pos += len(data)  # ignore the rest; the rewrite replaces it
        else:
            self._pos += end

    def _reset(self, damaged: bool) -> None:
        self.entries = {}
        self._ident = None
        self._pos = 0
        self.nbytes = 0
        self.damaged = damaged

    # -- writing --
    def add(self, new: dict[str, Entry], live: set[str] | None = None) -> None:
        """Record new entries: appended, or the whole file rewritten when it is damaged,
        missing, or (given the live base names) mostly about expunged messages."""
        self.entries.update(new)
        stale = [b for b in self.entries if b not in live] if live is not None else []
        if stale and len(stale) >= max(1, len(live) // 4):
            for b in stale:
                del self.entries[b]
            self._rewrite()
            return
        if not new:
            return
        if self.damaged:
            self._rewrite()
            return
        blob = b"".join(_pack(b, e) for b, e in new.items())
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            self._rewrite()
            return
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self._ident or st.st_size != self._pos:
                # Replaced or appended to by another process: our view is behind; append
                # anyway (records are self-contained) and read from the start next time.
                self._ident = None
            _write_all(fd, blob)
            if self._ident is not None:
                self._pos += len(blob)
                self.nbytes += len(blob)
        except OSError:
            pass  # a full disk only costs speed: the index is a cache
        finally:
            os.close(fd)

    def _rewrite(self) -> None:
        blob = MAGIC + b"".join(_pack(b, e) for b, e in self.entries.items())
        tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, blob)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return
        self._ident = (st.st_dev, st.st_ino)
        self._pos = len(blob)
        self.nbytes = len(blob)
        self.damaged = False


def _read_from(fd: int, pos: int) -> bytes:
    chunks = []
    while True:
        chunk = os.pread(fd, 1 << 22, pos)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        pos += len(chunk)


def _write_all(fd: int, blob: bytes) -> None:
    view = memoryview(blob)
    while view:
        n = os.write(fd, view)
        view = view[n:]


_INDEXES: OrderedDict[str, FolderIndex] = OrderedDict()
_REGISTRY_LOCK = threading.Lock()


def for_folder(folder_path) -> FolderIndex:
    key = str(folder_path)
    with _REGISTRY_LOCK:
        idx = _INDEXES.get(key)
        if idx is None:
            idx = _INDEXES[key] = FolderIndex(key)
        _INDEXES.move_to_end(key)
        used = sum(i.nbytes for i in _INDEXES.values())
        while used > BUDGET_BYTES and len(_INDEXES) > 1:
            _, dropped = _INDEXES.popitem(last=False)
            used -= dropped.nbytes
        return idx


def lookup(folder, msgs, complete: bool = False) -> dict[str, Entry]:
    """Index entries for these messages (store.Message), building missing ones from the
    message files. With complete=True msgs is the whole folder, so entries of messages
    no longer there may be dropped. Messages that vanished meanwhile are left out."""
    from .cache import header
    from ..errors import NotFound
    idx = for_folder(folder.path)
    with idx.lock:
        idx.refresh()
        entries = idx.entries
        new: dict[str, Entry] = {}
        for m in msgs:
            if m.base in entries or m.base in new:
                continue
            try:
                new[m.base] = entry_from_header(header(folder, m, remember=False))
            except NotFound:
                continue
        idx.add(new, {m.base for m in msgs} if complete else None)
        return {m.base: idx.entries[m.base] for m in msgs if m.base in idx.entries}
