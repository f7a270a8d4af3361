"""FETCH (RFC 3501 §6.4.5; BINARY, RFC 3516): parsing fetch items and building the
data of one message's FETCH response.

`parse_items` turns the tokens into FetchItem objects once per command; `render` runs
in a worker thread per message (it may read and parse the message file).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from . import mime, preview, savedate
from .transfer import decoded
from .index import select_fields
from .parser import Atom, ParseError, number
from .response import encode, literal, literal_parts

MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
SIMPLE = {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY", "BODYSTRUCTURE", "UID",
          "RFC822", "RFC822.HEADER", "RFC822.TEXT", "MODSEQ", "SAVEDATE", "PREVIEW"}
_SECTION = re.compile(r"^(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)\[([^\]]*)\](?:<(\d+)\.(\d+)>)?$",
                      re.IGNORECASE)
_SECTION_TEXT = re.compile(r"^((?:[1-9]\d{0,4})(?:\.[1-9]\d{0,4})*)?(?:\.?(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?"
                           r"(?:\s+\((.*)\))?$", re.IGNORECASE)
_DATE_TIME = re.compile(r"^ ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$", re.ASCII)
INTERNALDATE_END = 2 ** 32     # 2106-02-07: the last second an unsigned 32-bit mtime holds
# Items answered without parsing the message: from the message's metadata, or all of it.
_UNPARSED = {"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "RFC822", "BODY[]", "MODSEQ", "SAVEDATE"}
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@dataclass
class FetchItem:
    name: str                      # FLAGS, BODY[], BINARY.SIZE[] ...
    kind: str = ""                 # BODY, BINARY, BINARY.SIZE for sections
    numbers: list[int] = field(default_factory=list)
    text: str = ""                 # HEADER, HEADER.FIELDS, ... or ""
    fields: tuple[str, ...] | None = None  # a tuple: index.select_fields keys its regex by it
    partial: tuple[int, int] | None = None
    peek: bool = True
    label: str = ""                # how the response names it

    @property
    def whole(self) -> bool:
        """BODY[] (or BODY.PEEK[]): the whole message, no section to find."""
        return self.kind == "BODY" and not self.numbers and not self.text

    @property
    def needs_content(self) -> bool:
        return self.name not in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "UID", "MODSEQ", "SAVEDATE")

    @property
    def header_only(self) -> bool:
        """Only the top-level header is needed (no body, no structure, no size)."""
        if self.name in ("ENVELOPE", "RFC822.HEADER"):
            return True
        return self.kind == "BODY" and not self.numbers and self.text.startswith("HEADER")

    @property
    def sets_seen(self) -> bool:
        return not self.peek


def parse_items(tokens) -> list[FetchItem]:
    if isinstance(tokens, Atom) and tokens.upper() in MACROS:
        names = MACROS[tokens.upper()]
        return [FetchItem(n) for n in names]
    items = tokens if isinstance(tokens, list) else [tokens]
    if not items:
        raise ParseError("empty fetch list")
    out = []
    for i, tok in enumerate(items):
        if isinstance(tok, list) and i and out[-1].name == "PREVIEW":
            _preview_modifiers(tok)
            continue
        if not isinstance(tok, Atom):
            raise ParseError("fetch items must be atoms")
        out.append(_parse_item(str(tok)))
    return out


def preview_modifiers_follow(item, after) -> bool:
    """FETCH 1 PREVIEW (LAZY): the list after a lone PREVIEW is its modifiers (RFC 8970
    §5's fetch-att), not the FETCH modifiers of RFC 4466 (CHANGEDSINCE...)."""
    return (isinstance(item, Atom) and item.upper() == "PREVIEW" and isinstance(after, list)
            and bool(after) and isinstance(after[0], Atom) and after[0].upper() == "LAZY")


def _preview_modifiers(tokens: list) -> None:
    """PREVIEW's modifiers (RFC 8970 §3.2): "(" preview-mod *(SP preview-mod) ")", and
    LAZY the only one. A preview is always made at once here (from the first bytes of the
    message, then kept), so LAZY changes nothing."""
    if not tokens:
        raise ParseError("PREVIEW needs a modifier in its parentheses")
    for tok in tokens:
        if not (isinstance(tok, Atom) and tok.upper() == "LAZY"):
            raise ParseError(f"unknown PREVIEW modifier {str(tok)[:30]}")


def _parse_item(text: str) -> FetchItem:
    upper = text.upper()
    if upper in SIMPLE:
        peek = upper not in ("RFC822", "RFC822.TEXT")
        return FetchItem(upper, peek=peek)
    m = _SECTION.match(text)
    if not m:
        raise ParseError(f"unknown fetch item {text[:40]}")
    kind = m.group(1).upper()
    spec = m.group(2)
    sm = _SECTION_TEXT.match(spec.strip()) if spec.strip() else None
    if spec.strip() and not sm:
        raise ParseError(f"bad section {spec[:40]}")
    numbers = [int(x) for x in sm.group(1).split(".")] if sm and sm.group(1) else []
    sect_text = (sm.group(2) or "").upper() if sm else ""
    fields = None
    if sect_text.startswith("HEADER.FIELDS"):
        if not sm.group(3) or not sm.group(3).split():
            raise ParseError("HEADER.FIELDS needs a list of header names")
        fields = tuple(sm.group(3).split())
    elif sm and sm.group(3):
        raise ParseError(f"bad section {spec[:40]}")
    if sect_text == "MIME" and not numbers:
        raise ParseError("MIME needs a part number")
    if kind.startswith("BINARY") and sect_text:
        raise ParseError("BINARY takes part numbers only")
    partial = None
    if m.group(3) is not None:
        if kind == "BINARY.SIZE":
            raise ParseError("BINARY.SIZE takes no partial range")
        partial = (number(m.group(3), "partial offset"), number(m.group(4), "partial length", nonzero=True))
    base = kind.replace(".PEEK", "")
    section_label = ".".join(str(n) for n in numbers)
    if sect_text:
        section_label = f"{section_label}.{sect_text}" if section_label else sect_text
    if fields:
        section_label += " (" + " ".join(f.upper() for f in fields) + ")"
    label = f"{base}[{section_label}]"
    return FetchItem(label, kind=base, numbers=numbers, text=sect_text, fields=fields,
                     partial=partial, peek=kind.endswith(".PEEK") or kind == "BINARY.SIZE", label=label)


def internaldate(epoch: float) -> str:
    t = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return f"{t.day:02d}-{MONTHS[t.month - 1]}-{t.year:04d} {t:%H:%M:%S} +0000"


def parse_internaldate(text: str) -> float:
    """APPEND date-time: "17-Jul-1996 02:44:25 -0700". The date is kept as the file's
    mtime, which file systems keep exactly from 1970 to 2106 (ext4 would clamp year 1 to
    1901 and 9999 to 2446): a date outside that is refused, never changed."""
    m = _DATE_TIME.match(text)
    if not m or int(m.group(9)) >= 60:
        raise ParseError(f"bad date-time {text[:40]!r}")
    try:
        month = [x.lower() for x in MONTHS].index(m.group(2).lower()) + 1
        offset = dt.timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
        if m.group(7) == "-":
            offset = -offset
        t = dt.datetime(int(m.group(3)), month, int(m.group(1)), int(m.group(4)), int(m.group(5)),
                        int(m.group(6)), tzinfo=dt.timezone(offset))
        stamp = t.timestamp()
    except (ValueError, OverflowError):
        raise ParseError(f"bad date-time {text[:40]!r}") from None
    if not 0 <= stamp < INTERNALDATE_END:
        raise ParseError(f"date-time out of range (1970 to 2106): {text[:40]!r}")
    return stamp


def render(msg, items: list[FetchItem], data: bytes | None, flags_text: str | None,
           envelope: bytes | None = None, entry=None) -> bytes:
    """The parenthesised FETCH data for one message.

    msg: uid, size, internaldate; data: the CRLF message (None when no item needs it);
    flags_text: the encoded flag list, e.g. '(\\Seen)'. entry: the folder index entry
    to answer from instead of data (only ENVELOPE, given as envelope, and top-level
    HEADER.FIELDS of indexed names are asked for)."""
    return b"".join(render_parts(msg, items, data, flags_text, envelope, entry))


def render_parts(msg, items: list[FetchItem], data: bytes | None, flags_text: str | None,
                 envelope: bytes | None = None, entry=None) -> list[bytes]:
    """render()'s bytes in pieces, a message's content one of them uncopied: the caller
    joins a whole FETCH line (or batch) once."""
    indexed = entry is not None
    # parsed on first use: BODY[] and RFC822 need no header split (1000 bodies in one FETCH)
    root = None
    parse = data is not None and not indexed
    out: list[bytes] = [b"("]
    for item in items:
        if len(out) > 1:
            out.append(b" ")
        name = item.name
        if root is None and parse and name not in _UNPARSED:
            root = mime.Part(data, 0, len(data))
        if name == "UID":
            out.append(b"UID %d" % msg.uid)
        elif name == "FLAGS":
            out.append(b"FLAGS " + flags_text.encode())
        elif name == "MODSEQ":         # CONDSTORE (RFC 7162 §3.1.4)
            out.append(b"MODSEQ (%d)" % msg.modseq)
        elif name == "INTERNALDATE":
            out.append(b'INTERNALDATE "' + internaldate(msg.internaldate).encode() + b'"')
        elif name == "SAVEDATE":           # RFC 8514 §4.1
            saved = savedate.of(msg.msg.base)
            out.append(b"SAVEDATE NIL" if saved is None else b'SAVEDATE "' + internaldate(saved).encode() + b'"')
        elif name == "PREVIEW":            # RFC 8970 §3
            if msg.preview is None:        # UTF-8: a literal when not ASCII, as Dovecot sends it
                msg.preview = preview.preview_text(root or mime.Part(data, 0, len(data))).encode()
            out.append(b"PREVIEW " + encode(msg.preview))
        elif name == "RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % msg.size)
        elif name == "ENVELOPE":
            if envelope is None:
                envelope = encode(mime.envelope(root or mime.Part(data, 0, len(data))))
            out.append(b"ENVELOPE " + envelope)
        elif name in ("BODYSTRUCTURE", "BODY"):
            kept = getattr(msg, "structures", None)
            value = kept.get(name) if kept is not None else None
            if value is None:
                value = encode(mime.bodystructure(root, name == "BODYSTRUCTURE"))
                if kept is not None:          # for the caller to keep (structures.py)
                    kept[name] = value
            out.append(name.encode() + b" " + value)
        elif name == "RFC822":
            out.append(b"RFC822 ")
            out += literal_parts(data)
        elif name == "RFC822.HEADER":
            out.append(b"RFC822.HEADER " + literal(root.header_bytes()))
        elif name == "RFC822.TEXT":
            out.append(b"RFC822.TEXT " + literal(root.body_bytes()))
        elif item.kind == "BODY":
            if indexed:
                out.append(_indexed_fields(item, entry))
                continue
            elif item.whole:
                content = data
            else:
                content = mime.section_bytes(root, item.numbers, item.text, item.fields)
            out += _partial_parts(item, content)
        else:  # BINARY, BINARY.SIZE
            part = mime.find_part(root, item.numbers) if item.numbers else root
            content = b"" if part is None else decoded(part, with_header=not item.numbers)
            if item.kind == "BINARY.SIZE":
                out.append(f"BINARY.SIZE[{'.'.join(map(str, item.numbers))}] {len(content)}".encode())
            else:
                out += _partial_parts(item, content, binary=True)
    out.append(b")")
    return out


# A message expunged by another session, still numbered for this one: what Dovecot sends
# for each item it can no longer read (imap_fetch_send_nil_reply).
_NIL_ANSWERS = {
    "INTERNALDATE": b'"01-Jan-1970 00:00:00 +0000"', "RFC822.SIZE": b"0",
    "ENVELOPE": b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
    "BODYSTRUCTURE": b'("text" "plain" NIL NIL NIL "7bit" 0 0 NIL NIL NIL NIL)',
    "BODY": b'("text" "plain" NIL NIL NIL "7bit" 0 0)',
    "RFC822": b"NIL", "RFC822.HEADER": b"NIL", "RFC822.TEXT": b"NIL",
    "SAVEDATE": b"NIL", "PREVIEW": b"NIL",
}


def render_vanished(msg, items: list[FetchItem], flags_text: str | None) -> bytes:
    """The FETCH data of a message whose file is gone: its UID and last known flags, and
    an empty answer for every other item (RFC 2180 §4.1.3, as Dovecot answers)."""
    out: list[bytes] = []
    for item in items:
        if item.name == "UID":
            out.append(b"UID %d" % msg.uid)
        elif item.name == "FLAGS":
            out.append(b"FLAGS " + flags_text.encode())
        elif item.name == "MODSEQ":
            continue                       # no mod-sequence for what is gone
        elif item.name in _NIL_ANSWERS:
            out.append(item.name.encode() + b" " + _NIL_ANSWERS[item.name])
        elif item.kind == "BINARY.SIZE":
            out.append(item.label.encode() + b" 0")
        else:
            start = b"<%d>" % item.partial[0] if item.partial is not None else b""
            out.append(item.label.encode() + start + b" NIL")
    return b"(" + b" ".join(out) + b")"


def _indexed_fields(item: FetchItem, entry) -> bytes:
    """A HEADER.FIELDS item from an index entry; the entry remembers the last one made."""
    answer = entry.answer
    if answer is not None and answer[0] == item.label and item.partial is None:
        return answer[1]
    out = _with_partial(item, select_fields(entry.fields, item.fields, entry.plain))
    if item.partial is None:
        entry.answer = (item.label, out)
    return out


def _with_partial(item: FetchItem, content: bytes, binary: bool = False) -> bytes:
    return b"".join(_partial_parts(item, content, binary))


def _partial_parts(item: FetchItem, content: bytes, binary: bool = False) -> tuple[bytes, bytes]:
    """An item's label and literal announcement, and its content (the range asked for)."""
    label = item.label.encode()
    if item.partial is not None:
        start, count = item.partial
        content = content[start:start + count]
        label += b"<%d>" % start
    if binary and b"\0" in content:
        return label + b" ~{%d}\r\n" % len(content), content
    head, content = literal_parts(content)
    return label + b" " + head, content
