"""A persistent, rebuildable per-folder index of the header metadata that FETCH and
SEARCH need (the usual header fields and the ENVELOPE), so a large folder is searched
and listed without opening every message file.

The file is `<folder>/mailctl-index` (Dovecot ignores files it does not know). It is a
cache and never the source of truth: message files never change once delivered, so an
entry keyed by the message's base name cannot go stale, and a missing, damaged or
foreign file is simply ignored and rebuilt from the messages.

Format: the line MAGIC, then records
    "<I crc32><I len(base)><I len(fields)><I len(envelope)><I len(subject)>"
    base fields envelope subject
where crc32 covers the four payloads, len(envelope) NO_ENVELOPE marks an entry whose
ENVELOPE is not made yet (a later record for the same base replaces it), the top bit
of len(fields) (PLAIN) says the fields are plain (see _plain), and subject is what
SEARCH SUBJECT compares (UTF-8; len NO_TEXT: the message has no Subject field), so a
new process neither re-checks nor re-decodes them. New entries are appended with one write() on an
O_APPEND descriptor per batch under an exclusive flock (readers take a shared one), so
writers never interleave records and readers never see half a record; a record torn by
a crash or garbled ends the readable part, and the next write rewrites the whole file
(temp file + rename). A rewrite (after damage, or to drop entries of
expunged messages) may lose entries another process appended to the old file at that
moment; they are rebuilt when next needed.
"""
from __future__ import annotations

import fcntl
import os
import re
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

from .. import nofollow
from . import mime
from .addrlist import address_list
from .headercache import header
from .response import string
from .search import ADDRESS_FIELDS, address_text, decode_header_text

FILENAME = "mailctl-index"
MAGIC = b"mailctl-index 3\n"      # older versions are rebuilt, as foreign files are (3: ENVELOPE
# addresses parsed anew, comments naming them; the cached ENVELOPEs of 2 differ)
_RECORD = struct.Struct("<IIIII")
MAX_PAYLOAD = 1 << 20            # a larger length means a damaged record
MAX_BASE = 4096
NO_ENVELOPE = 0xFFFFFFFF         # envelope length of an entry whose ENVELOPE is not made yet
NO_TEXT = 0xFFFFFFFF             # subject length of a message without a Subject field
PLAIN = 0x80000000               # in len(fields): the fields are plain
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
                     # (an odd header - stray lines, lone CRs - is kept whole)
    envelope: bytes | None  # the encoded ENVELOPE, None until first asked for
    plain: bool              # _plain(fields)
    subject: str | None      # field_text(subject): what SEARCH SUBJECT compares
    # (label, bytes): the last HEADER.FIELDS item answered from this entry, as sent.
    # A client asks the same fields each time it opens the folder.
    answer: tuple[str, bytes] | None = field(default=None, compare=False)

    def part(self) -> mime.Part:
        return mime.Part(self.fields, 0, len(self.fields))


def entry_from_header(header_crlf: bytes, with_envelope: bool = True) -> Entry:
    """The index entry of a message, from its CRLF header (the file is the truth)."""
    # An odd header is kept whole, so every answer from it is what the message gives.
    plain = _plain(header_crlf)
    fields = select_fields(header_crlf, _INDEXED_NAMES, plain) if plain else header_crlf
    return Entry(fields, _envelope_of(fields) if with_envelope else None, plain,
                 field_text(fields, plain, "subject"))


_FINDERS: dict[str, re.Pattern] = {}


def field_text(fields: bytes, plain: bool, name: str) -> str | None:
    """The decoded, casefolded values of the fields called name (lower-case) joined by
    NUL, or None when there is no such field: what SEARCH on a header key compares."""
    finder = _FINDERS.get(name)
    if finder is None:
        # The values of plain headers (see _plain) by one regex; what parse_headers gives.
        # Each field is found by the LF before it (see select_fields: faster than ^).
        finder = _FINDERS[name] = re.compile(
            rb"\n" + re.escape(name.encode("ascii")) + rb"[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)",
            re.IGNORECASE)
    if plain:
        raw = [v.strip() for v in finder.findall(b"\n" + fields)]
        raw = [_UNFOLD.sub(b" ", v) if b"\n" in v else v for v in raw]  # folded lines
    else:
        raw = _values(fields, name.encode("ascii"))
    # Most values are plain text: decoded here, without the RFC 2047 machinery.
    values = [decode_header_text(v) if b"=?" in v else v.decode("utf-8", "replace").casefold() for v in raw]
    if name in ADDRESS_FIELDS:        # and the addresses as SEARCH FROM etc. also read them
        values += [a for a in map(address_text, raw) if a and a not in values]
    return "\0".join(values) if values else None


def _envelope_of(fields: bytes) -> bytes:
    """encode_envelope(mime.envelope()) of an entry's fields (the ENVELOPE reads only
    INDEXED fields, so they give the same answer), with each address field's encoding
    taken from _ADDRESSES when the same value was encoded before: a folder's messages
    share a few To and From values, and parsing them is most of an ENVELOPE's cost."""
    h = mime.Part(fields, 0, len(fields)).header
    sender, from_, reply_to = h("sender"), h("from"), h("reply-to")
    return b"(" + b" ".join((
        _nstring(h("date")), _nstring(h("subject")), _addresses(from_),
        _addresses(from_ if sender is None else sender), _addresses(from_ if reply_to is None else reply_to),
        _addresses(h("to")), _addresses(h("cc")), _addresses(h("bcc")),
        _nstring(h("in-reply-to")), _nstring(h("message-id")))) + b")"


_ADDRESSES: dict[bytes, bytes] = {}     # address field value -> its encoded address list
_ADDRESSES_MAX = 8192


def _nstring(value: bytes | None) -> bytes:
    return b"NIL" if value is None else string(value)


def _addresses(value: bytes | None) -> bytes:
    if value is None or not value.strip():
        return b"NIL"
    encoded = _ADDRESSES.get(value)
    if encoded is None:
        if len(_ADDRESSES) >= _ADDRESSES_MAX:
            _ADDRESSES.clear()
        encoded = _ADDRESSES[value] = encode_envelope([address_list(value) or None])[1:-1]
    return encoded


def encode_envelope(env: list) -> bytes:
    """response.encode for an ENVELOPE (nstrings and address lists), without the
    general encoder's per-item dispatch: it runs for every message of a folder."""
    out = []
    for item in env:
        if item is None:
            out.append(b"NIL")
        elif type(item) is bytes:
            out.append(string(item))
        else:  # addresses: "((name adl mailbox host)(...))"
            out.append(b"(" + b"".join(
                b"(" + b" ".join(b"NIL" if x is None else string(x) for x in address) + b")"
                for address in item) + b")")
    return b"(" + b" ".join(out) + b")"


def _values(fields: bytes, key: bytes) -> list[bytes]:
    """The values of the fields called key (lower-case), as mime.parse_headers gives them."""
    out = []
    for line in mime._UNFOLD.sub(b" ", fields).split(b"\r\n"):
        if not line or line[:1] in b" \t":
            continue
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == key:
            out.append(value.strip())
    return out


_SELECTORS: dict[tuple, re.Pattern] = {}
_UNFOLD = mime._UNFOLD
# A line that is neither a field nor a continuation: the first line, or one after an LF
# (a search for a literal LF runs faster than a MULTILINE ^ tried at every byte).
_STRAY_FIRST = re.compile(rb"[^ \t\r\n:][^\n:]*\n")
_STRAY_LINE = re.compile(rb"\n[^ \t\r\n:][^\n:]*\n")
_INDEXED_NAMES = tuple(sorted(INDEXED))


def _plain(header: bytes) -> bool:
    """Only field lines and their continuation lines, each ending in CRLF: the two
    header parsers in mime (section_bytes, parse_headers) then read it alike."""
    return not (b"\x0b" in header or b"\x0c" in header or header.count(b"\r") != header.count(b"\n")
                or not header.endswith(b"\n") or header[:1] in (b" ", b"\t") or _STRAY_FIRST.match(header)
                or _STRAY_LINE.search(header))


def select_fields(fields: bytes, names, plain: bool | None = None) -> bytes:
    """mime.section_bytes(HEADER.FIELDS (names)) of a CRLF header (or an entry's
    fields), by one regex scan. Headers whose lines are not all plain field and
    continuation lines ending in CRLF take the general path."""
    if not (plain if plain is not None else _plain(fields)):
        part = mime.Part(fields, 0, len(fields))
        return mime.section_bytes(part, [], "HEADER.FIELDS", list(names))
    key = names if type(names) is tuple else tuple(names)
    pattern = _SELECTORS.get(key)
    if pattern is None:
        # Each field found by the LF before it, and taken without its own last LF (the
        # next field's match starts there): sre scans for a literal LF fast, where a
        # MULTILINE ^ is tried at every byte. A third less time when building the index.
        alternatives = b"|".join(re.escape(n.lower().encode("ascii")) for n in names)
        pattern = re.compile(rb"\n((?:" + alternatives + rb")[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*)",
                             re.IGNORECASE)
        if len(_SELECTORS) > 256:
            _SELECTORS.clear()
        _SELECTORS[key] = pattern
    found = pattern.findall(b"\n" + fields)
    return b"\n".join(found) + b"\n\r\n" if found else b"\r\n"


def covers(names) -> bool:
    """Whether header fields of these names are all in the index."""
    return all(n.lower() in INDEXED for n in names)


def _pack(base: str, entry: Entry) -> bytes:
    """The record of an entry; b"" for one too large to keep on disk (held in memory only)."""
    b = base.encode("utf-8", "surrogateescape")
    subject = entry.subject.encode("utf-8", "surrogatepass") if entry.subject is not None else b""
    if len(b) > MAX_BASE or max(len(entry.fields), len(entry.envelope or b""), len(subject)) > MAX_PAYLOAD:
        return b""
    env = entry.envelope if entry.envelope is not None else b""
    crc = zlib.crc32(subject, zlib.crc32(env, zlib.crc32(entry.fields, zlib.crc32(b))))
    le = len(env) if entry.envelope is not None else NO_ENVELOPE
    ls = len(subject) if entry.subject is not None else NO_TEXT
    lf = len(entry.fields) | (PLAIN if entry.plain else 0)
    return _RECORD.pack(crc, len(b), lf, le, ls) + b + entry.fields + env + subject


def _parse(data: bytes, pos: int, out: dict[str, Entry]) -> tuple[int, bool]:
    """Records from data[pos:] into out; (end of the last good record, damaged?).
    A record cut short at the end is not damage: another process may be writing it."""
    size = _RECORD.size
    n = len(data)
    while pos < n:
        if pos + size > n:
            return pos, False
        crc, lb, lf, le, ls = _RECORD.unpack_from(data, pos)
        plain = bool(lf & PLAIN)
        lf &= ~PLAIN
        has_env, has_subject = le != NO_ENVELOPE, ls != NO_TEXT
        le, ls = le if has_env else 0, ls if has_subject else 0
        start = pos + size
        end = start + lb + lf + le + ls
        if lb > MAX_BASE or lf > MAX_PAYLOAD or le > MAX_PAYLOAD or ls > MAX_PAYLOAD:
            return pos, True
        if end > n:
            return pos, False
        b = data[start:start + lb]
        fields = data[start + lb:start + lb + lf]
        env = data[start + lb + lf:end - ls]
        subject = data[end - ls:end]
        if zlib.crc32(subject, zlib.crc32(env, zlib.crc32(fields, zlib.crc32(b)))) != crc:
            return pos, True
        try:
            text = subject.decode("utf-8", "surrogatepass") if has_subject else None
        except UnicodeDecodeError:
            return pos, True
        out[b.decode("utf-8", "surrogateescape")] = Entry(fields, env if has_env else None, plain, text)
        pos = end
    return pos, False


class FolderIndex:
    """One folder's index file and this process's copy of its entries."""

    def __init__(self, folder_path):
        self.path = os.path.join(str(folder_path), FILENAME)
        self.entries: dict[str, Entry] = {}
        self.damaged = False     # the file needs a full rewrite before appending
        self._ident = None       # (st_dev, st_ino) of the file we read
        self._torn_size = None   # file size when we saw a cut-short last record
        self._pos = 0            # how far we read it
        self.nbytes = 0
        self.lock = threading.Lock()
        # name -> {base: the decoded, casefolded values of that field joined by NUL, or
        # None when the message has no such field}: what SEARCH on a header key compares.
        self.columns: dict[str, dict[str, str | None]] = {}

    def column(self, name: str, bases) -> dict[str, str | None]:
        """The decoded texts of one INDEXED field for these bases (made once per process;
        the subject's are kept in the entries)."""
        entries = self.entries
        if name == "subject":
            return {base: entries[base].subject for base in bases if base in entries}
        col = self.columns.setdefault(name, {})
        for base in bases:
            if base in col:
                continue
            entry = entries.get(base)
            if entry is None:
                continue
            text = col[base] = field_text(entry.fields, entry.plain, name)
            self.nbytes += 64 + (len(text) if text else 0)
        return col

    # -- reading --
    def refresh(self) -> None:
        try:
            fd = nofollow.open_file(self.path)
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
            # Shared lock: never read a record another process is half way through writing.
            fcntl.flock(fd, fcntl.LOCK_SH)
            data = _read_from(fd, self._pos)
        finally:
            os.close(fd)
        seen = self._pos + len(data)
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
            # A record cut short: being written right now, or torn by a crash. It is
            # damage if it is still cut short when we next write (see add).
            self._torn_size = seen if end < len(data) else None

    def _reset(self, damaged: bool) -> None:
        self.entries = {}
        self.columns = {}
        self._torn_size = None
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
                for col in self.columns.values():
                    col.pop(b, None)
            self._rewrite()
            return
        if not new:
            return
        if self.damaged:
            self._rewrite()
            return
        blob = b"".join(_pack(b, e) for b, e in new.items())
        try:
            fd = nofollow.open_file(self.path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            self._rewrite()
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # before fstat: the size we see is where we write
            st = os.fstat(fd)
            if self._torn_size is not None and st.st_size == self._torn_size:
                os.close(fd)
                fd = -1
                self._rewrite()  # a torn record would misalign every record after it
                return
            if (st.st_dev, st.st_ino) != self._ident:
                self._ident = None  # replaced meanwhile: read it afresh next time
            _write_all(fd, blob)
            if self._ident is not None and st.st_size == self._pos:
                self._pos += len(blob)
                self.nbytes += len(blob)
            # else another process appended since we read: the next refresh reads its
            # records and ours from self._pos, a record boundary (appends are whole).
        except OSError:
            pass  # a full disk only costs speed: the index is a cache
        finally:
            if fd >= 0:
                os.close(fd)

    def _rewrite(self) -> None:
        blob = MAGIC + b"".join(_pack(b, e) for b, e in self.entries.items())
        tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            fd = nofollow.open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
        self._torn_size = None


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


def columns(folder, names, bases) -> dict[str, dict[str, str | None]]:
    """Decoded field texts for SEARCH (see FolderIndex.column), after lookup()."""
    idx = for_folder(folder.path)
    with idx.lock:
        return {name: idx.column(name, bases) for name in names if name in INDEXED}


def lookup(folder, msgs, complete: bool = False, envelope: bool = False) -> dict[str, Entry]:
    """Index entries for these messages (store.Message), building missing ones from the
    message files; with envelope=True every entry has its ENVELOPE (made on first need
    and recorded by appending a newer record). With complete=True msgs is the whole
    folder, so entries of messages no longer there may be dropped. Messages that
    vanished meanwhile are left out."""
    from ..errors import NotFound
    idx = for_folder(folder.path)
    with idx.lock:
        idx.refresh()
        entries = idx.entries
        new: dict[str, Entry] = {}
        for m in msgs:
            old = entries.get(m.base)
            if old is not None:
                if envelope and old.envelope is None and m.base not in new:
                    new[m.base] = Entry(old.fields, _envelope_of(old.fields), old.plain, old.subject)
                continue
            if m.base in new:
                continue
            try:
                new[m.base] = entry_from_header(header(folder, m, remember=False), envelope)
            except NotFound:
                continue
        idx.add(new, {m.base for m in msgs} if complete else None)
        return {m.base: idx.entries[m.base] for m in msgs if m.base in idx.entries}
