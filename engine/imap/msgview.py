"""What FETCH and SEARCH see of one message of the selected folder: its sequence number,
flags as this session reports them, and its parsed content or header, read only when a
command needs them (the header through the header cache, or the folder's index entry).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import maildir as store
from . import headercache, mime
from .index import INDEXED
from .selected import Selected, session_flags


@dataclass
class View:
    """What FETCH and SEARCH see of one message."""
    seq: int
    msg: store.Message
    recent: bool
    modseq: int = 0     # CONDSTORE: set by the commands that report or compare it
    preview: bytes | None = None  # PREVIEW (RFC 8970): the UTF-8 text, once made or found kept
    structures: dict | None = None  # {"BODYSTRUCTURE"/"BODY": encoded}, made or found kept (structures.py)
    _part: object = None
    _loader: object = None
    _folder: object = None

    @classmethod
    def of(cls, sel: Selected, seq: int, loader) -> View:
        """Message `seq` of the selected folder; `loader(msg)` reads it whole when needed."""
        m = sel.msgs[seq - 1]
        return cls(seq, m, sel.is_recent(m), 0, None, None, None, loader, sel.folder)

    @property
    def uid(self) -> int:
        return self.msg.uid

    @property
    def flags(self) -> frozenset[str]:
        return session_flags(self.msg, self.recent)

    @property
    def size(self) -> int:
        return self.msg.vsize

    @property
    def internaldate(self) -> float:
        return self.msg.mtime

    def part(self, header_only: bool = False):
        """The parsed message; with header_only, only its header is read from disk."""
        if self._part is None or (not header_only and self._part_is_header):
            if header_only:
                data = headercache.header(self._folder, self.msg)
            else:
                data = store.to_crlf(self.raw())
            self._part = mime.Part(data, 0, len(data))
            self._part_is_header = header_only
        return self._part

    def raw(self) -> bytes:
        """The message file as stored (LF line ends), read once: SEARCH BODY looks at it
        before paying for the CRLF copy and the parse most messages never need."""
        if self._raw is None:
            self._raw = self._loader(self.msg)
        return self._raw

    def forget(self) -> None:
        """Drop the content read: a SEARCH over every message holds one at a time."""
        self._part = self._raw = None

    _part_is_header = False
    _raw = None
    _entry = None  # the folder index entry (index.Entry), when the caller looked it up
    _columns = None  # {field name: {base: decoded text | None}} from index.columns

    def header_text(self, name: str):
        """The decoded, casefolded values of a field joined by NUL (None: no such field),
        or Ellipsis when not known without parsing the header."""
        col = self._columns.get(name) if self._columns else None
        if col is None:
            return ...
        return col.get(self.msg.base, ...)

    def header_part(self, name: str):
        """A parsed header holding every field called name: the index entry's fields
        when they include it, else the message's own header."""
        if self._entry is not None and name in INDEXED:
            if not isinstance(self._entry, mime.Part):
                self._entry = self._entry.part()  # parsed once for every key
            return self._entry
        return self.part(header_only=True)
