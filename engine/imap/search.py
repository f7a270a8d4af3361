"""SEARCH (RFC 3501 §6.4.4): criteria tokens -> a predicate over messages.

A message given to `matches` offers: seq, uid, flags (set of IMAP flag names),
internaldate (epoch seconds), size (RFC822.SIZE), recent (bool), part() (the parsed
mime.Part of the CRLF message, loaded only when a key needs content) and
header_part(name) (a mime.Part whose header holds at least the fields of that name)
and header_text(name) (see msgview.View.header_text).
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import quopri
import re
import time

from .. import charsets
from ..errors import NotFound
from . import mime, savedate
from .addrlist import address_list
from .parser import Atom, ParseError, SequenceMatcher, as_number, as_text, parse_sequence_set

SUPPORTED_CHARSETS = ("UTF-8", "US-ASCII")

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


class BadCharset(Exception):
    pass


def parse_date(token) -> dt.date:
    text = as_text(token, "date")
    if not text.isascii():
        raise ParseError(f"bad date {text[:30]!r} (want e.g. 1-Feb-2024)")
    try:
        d, m, y = text.split("-")
        return dt.date(int(y), MONTHS.index(m.lower()) + 1, int(d))
    except (ValueError, IndexError):
        raise ParseError(f"bad date {text[:30]!r} (want e.g. 1-Feb-2024)") from None


_FLAG_KEYS = {"ANSWERED": ("\\Answered", True), "DELETED": ("\\Deleted", True),
              "DRAFT": ("\\Draft", True), "FLAGGED": ("\\Flagged", True), "SEEN": ("\\Seen", True),
              "UNANSWERED": ("\\Answered", False), "UNDELETED": ("\\Deleted", False),
              "UNDRAFT": ("\\Draft", False), "UNFLAGGED": ("\\Flagged", False), "UNSEEN": ("\\Seen", False)}
_STRING_HEADER_KEYS = {"BCC": "bcc", "CC": "cc", "FROM": "from", "SUBJECT": "subject", "TO": "to"}
_DATE_KEYS = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE",
              "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"}       # SAVEDATE (RFC 8514 §4.2)


def parse(tokens: list, charset: str = "UTF-8") -> list:
    """Criteria tokens -> a list of nodes (implicitly ANDed). Raises ParseError."""
    pos = 0
    nodes = []
    while pos < len(tokens):
        node, pos = _parse_key(tokens, pos, 0)
        nodes.append(node)
    if not nodes:
        raise ParseError("SEARCH needs at least one criterion")
    return nodes


def _parse_key(tokens: list, pos: int, depth: int):
    if depth > 50:
        raise ParseError("search criteria nested too deeply")
    tok = tokens[pos]
    pos += 1

    def arg():
        nonlocal pos
        if pos >= len(tokens):
            raise ParseError(f"{tok} needs an argument")
        pos += 1
        return tokens[pos - 1]

    if isinstance(tok, list):
        if not tok:
            raise ParseError("empty search list")
        sub, p = [], 0
        while p < len(tok):
            node, p = _parse_key(tok, p, depth + 1)
            sub.append(node)
        return ("AND", sub), pos
    if not isinstance(tok, Atom):
        raise ParseError("search key must be an atom")
    key = tok.upper()
    if key == "ALL":
        return ("ALL",), pos
    if key in _FLAG_KEYS:
        flag, want = _FLAG_KEYS[key]
        return ("FLAG", flag, want), pos
    if key in ("NEW", "OLD", "RECENT"):
        return (key,), pos
    if key in ("KEYWORD", "UNKEYWORD"):
        return ("FLAG", as_text(arg(), "keyword"), key == "KEYWORD"), pos
    if key in _STRING_HEADER_KEYS:
        return ("HEADER", _STRING_HEADER_KEYS[key], _needle(arg())), pos
    if key == "HEADER":
        name = as_text(arg(), "header name").lower()
        return ("HEADER", name, _needle(arg())), pos
    if key in ("BODY", "TEXT"):
        return (key, _needle(arg())), pos
    if key == "SAVEDATESUPPORTED":            # every folder here has save dates (savedate.py)
        return ("ALL",), pos
    if key in _DATE_KEYS:
        return (key, parse_date(arg())), pos
    if key in ("LARGER", "SMALLER"):
        return (key, as_number(arg(), "size")), pos
    if key == "MODSEQ":     # CONDSTORE (RFC 7162 §3.1.5): [entry-name entry-type] mod-sequence
        a = arg()
        if not (isinstance(a, Atom) and str(a).isdigit()):
            arg()           # the entry type: per-flag mod-sequences are the message's here
            a = arg()
        text = str(a) if isinstance(a, Atom) else ""
        if not (text.isascii() and text.isdigit() and len(text) <= 19):
            raise ParseError("MODSEQ needs a mod-sequence")
        return ("MODSEQ", int(text)), pos
    if key == "UID":
        a = arg()
        if not isinstance(a, Atom):
            raise ParseError("UID needs a sequence set")
        if a == "$":
            return ("SAVED",), pos
        return ("UID", parse_sequence_set(str(a))), pos
    if key == "NOT":
        node, pos = _parse_key(tokens, pos, depth + 1) if pos < len(tokens) else _missing("NOT")
        return ("NOT", node), pos
    if key == "OR":
        if pos >= len(tokens):
            _missing("OR")
        a, pos = _parse_key(tokens, pos, depth + 1)
        if pos >= len(tokens):
            _missing("OR")
        b, pos = _parse_key(tokens, pos, depth + 1)
        return ("OR", a, b), pos
    if key in ("OLDER", "YOUNGER"):           # WITHIN (RFC 5032): seconds before now
        seconds = as_number(arg(), "interval")
        if not seconds:
            raise ParseError(f"{key} needs an interval of at least one second")
        return (key, seconds), pos
    if key == "$":                            # SEARCHRES (RFC 5182): the saved result
        return ("SAVED",), pos
    if key[:1].isdigit() or key[:1] == "*":
        return ("SEQ", parse_sequence_set(key)), pos
    raise ParseError(f"unknown search key {str(tok)[:30]}")


def _missing(what):
    raise ParseError(f"{what} needs a search key")


def _needle(token) -> str:
    return as_text(token, "search string").casefold()


class Searcher:
    """Evaluates parsed criteria; `largest_seq`/`largest_uid` resolve '*'."""

    def __init__(self, nodes: list, largest_seq: int, largest_uid: int, today=None,
                 saved: frozenset[int] = frozenset()):
        self.nodes = nodes
        self.largest_seq = largest_seq
        self.largest_uid = largest_uid
        self.saved = saved           # the UIDs SEARCHRES saved ($)
        self.now = time.time()
        self._sets: dict[int, SequenceMatcher] = {}

    def needs_content(self) -> bool:
        return _needs_content(("AND", self.nodes))

    def matches(self, msg) -> bool:
        """Whether msg meets every criterion. A message whose file another session
        expunged meanwhile meets none (as Dovecot: the SEARCH still completes OK)."""
        try:
            return all(self._eval(n, msg) for n in self.nodes)
        except (NotFound, FileNotFoundError):
            return False

    def _set(self, ranges, largest):
        key = id(ranges)
        if key not in self._sets:
            self._sets[key] = SequenceMatcher(ranges, largest)
        return self._sets[key]

    def _eval(self, node, msg) -> bool:
        kind = node[0]
        if kind == "ALL":
            return True
        if kind == "AND":
            return all(self._eval(n, msg) for n in node[1])
        if kind == "NOT":
            return not self._eval(node[1], msg)
        if kind == "OR":
            return self._eval(node[1], msg) or self._eval(node[2], msg)
        if kind == "FLAG":
            return (node[1].lower() in {f.lower() for f in msg.flags}) == node[2]
        if kind == "RECENT":
            return msg.recent
        if kind == "NEW":
            return msg.recent and "\\Seen" not in msg.flags
        if kind == "OLD":
            return not msg.recent
        if kind == "SEQ":
            return msg.seq in self._set(node[1], self.largest_seq)
        if kind == "UID":
            return msg.uid in self._set(node[1], self.largest_uid)
        if kind == "MODSEQ":
            return msg.modseq >= node[1]
        if kind == "SAVED":
            return msg.uid in self.saved
        if kind == "OLDER":
            return self.now - msg.internaldate > node[1]
        if kind == "YOUNGER":
            return self.now - msg.internaldate <= node[1]
        if kind == "LARGER":
            return msg.size > node[1]
        if kind == "SMALLER":
            return msg.size < node[1]
        if kind in ("BEFORE", "ON", "SINCE"):
            day = dt.datetime.fromtimestamp(msg.internaldate, dt.timezone.utc).date()
            return _compare(kind, day, node[1])
        if kind in ("SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"):
            return _compare(kind[5:], savedate.day(msg), node[1])
        if kind in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            day = _sent_date(msg.header_part("date"))
            return day is not None and _compare(kind[4:], day, node[1])
        if kind == "HEADER":
            text = msg.header_text(node[1]) if "\0" not in node[2] else ...
            if text is not ...:
                return text is not None and (not node[2] or node[2] in text)
            part = msg.header_part(node[1])
            if _cannot_contain(part.data[:part.body_start], node[2]):
                return False
            return _header_contains(part, node[1], node[2])
        if kind == "BODY":
            if _cannot_contain(_stored(msg, node[1]), node[1]):
                return False
            return node[1] in _body_text(msg.part())
        if kind == "TEXT":
            if _cannot_contain(_stored(msg, node[1]), node[1]):
                return False
            part = msg.part()
            return node[1] in decode_header_text(part.header_bytes()) or node[1] in _body_text(part)
        raise AssertionError(kind)


def size(node) -> int:
    """How many keys a (parsed) node holds: the cost of matching one message."""
    kind = node[0]
    if kind == "AND":
        return 1 + sum(size(n) for n in node[1])
    if kind == "NOT":
        return 1 + size(node[1])
    if kind == "OR":
        return 1 + size(node[1]) + size(node[2])
    return 1


def within(items, deadline: float):
    """The items, until time.monotonic() passes the deadline: then TimeoutError. A
    search in a worker thread ends with its command's time limit, instead of running on
    after the client got its NO."""
    for item in items:
        if time.monotonic() > deadline:
            raise TimeoutError("search stopped at the command's time limit")
        yield item


def uses_modseq(node) -> bool:
    """Whether a (parsed) node holds the MODSEQ key (the reply then ends with (MODSEQ n))."""
    kind = node[0]
    if kind == "AND":
        return any(uses_modseq(n) for n in node[1])
    if kind == "NOT":
        return uses_modseq(node[1])
    if kind == "OR":
        return uses_modseq(node[1]) or uses_modseq(node[2])
    return kind == "MODSEQ"


def header_names(node) -> set[str]:
    """The header fields that HEADER and SENT* keys in a (parsed) node look at."""
    kind = node[0]
    if kind == "AND":
        return set().union(*(header_names(n) for n in node[1]))
    if kind == "NOT":
        return header_names(node[1])
    if kind == "OR":
        return header_names(node[1]) | header_names(node[2])
    if kind == "HEADER":
        return {node[1]}
    if kind in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        return {"date"}
    return set()


def _needs_content(node) -> bool:
    kind = node[0]
    if kind == "AND":
        return any(_needs_content(n) for n in node[1])
    if kind == "NOT":
        return _needs_content(node[1])
    if kind == "OR":
        return _needs_content(node[1]) or _needs_content(node[2])
    return kind in ("HEADER", "BODY", "TEXT", "SENTBEFORE", "SENTON", "SENTSINCE")


_ENCODED_MARKERS = (b"base64", b"quoted-printable", b"=?")


def _stored(msg, needle: str) -> bytes:
    """What _cannot_contain may look at for this needle: the file as stored (LF line
    ends) when the needle has no CR or LF, as CRLF only inserts or drops CRs next to LFs;
    else the message as served. Most messages are ruled out before any copy or parse."""
    if "\r" in needle or "\n" in needle:
        return msg.part().data
    return msg.raw()


def _cannot_contain(data: bytes, needle: str) -> bool:
    """A cheap proof that an ASCII needle is nowhere in the message: not in its raw
    bytes, and nothing in it is encoded (base64, quoted-printable, RFC 2047 words)."""
    if not needle.isascii():
        return False
    low = data.lower()
    if needle.encode() in low:
        return False
    return not any(marker in low for marker in _ENCODED_MARKERS)


def _compare(kind: str, day: dt.date, ref: dt.date) -> bool:
    if kind == "BEFORE":
        return day < ref
    if kind == "ON":
        return day == ref
    return day >= ref


def _sent_date(part: mime.Part) -> dt.date | None:
    value = part.header("date")
    if value is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(value.decode("utf-8", "replace")).date()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# A value that is one UTF-8 or ASCII encoded-word (RFC 2047), as most mailers write a
# non-ASCII subject: decoded without the email.header machinery, which costs ten times more.
_ONE_WORD = re.compile(r"=\?(utf-8|us-ascii)\?([bq])\?([^?\s]*)\?=", re.IGNORECASE)
_QP_WORD = re.compile(rb"(?:[^=]|=[0-9A-Fa-f]{2})*")


def _decode_word(match: re.Match) -> str | None:
    """The text of one encoded-word, or None when only the general decoder can say."""
    try:
        charset, encoding, data = match.group(1), match.group(2), match.group(3).encode("ascii")
        if encoding in "bB":
            decoded = binascii.a2b_base64(data, strict_mode=True)
        elif _QP_WORD.fullmatch(data):
            decoded = binascii.a2b_qp(data, header=True)
        else:
            return None  # a stray "=": the general decoder's reading
        return decoded.decode("utf-8" if charset.lower() == "utf-8" else "ascii") if decoded else None
    except (binascii.Error, ValueError):
        return None


def decode_header_text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    if "=?" not in text:
        return text.casefold()
    match = _ONE_WORD.fullmatch(text)
    decoded = _decode_word(match) if match else None
    if decoded is not None:
        return decoded.casefold()
    return charsets.decode_words(text).casefold()


def _header_contains(part: mime.Part, name: str, needle: str) -> bool:
    for key, value in part.headers:
        if key == name:
            if not needle or needle in decode_header_text(value):
                return True
            if name in ADDRESS_FIELDS and needle in address_text(value):
                return True
    return False


# SEARCH FROM, TO, CC and BCC look in the envelope's field (RFC 3501 §6.4.4): besides
# the field's own text they match its addresses as the ENVELOPE reads them, so
# `user@host (Real Name)` is found as "real name" <user@host> and `user (x) @ host`
# as user@host.
ADDRESS_FIELDS = frozenset({"from", "to", "cc", "bcc"})
_ATEXT = r'[^\x00-\x20()<>\[\]:;@\\,."\x7f]+'      # RFC 5322 atext, UTF-8 included (RFC 6532)
_ATOM = re.compile(_ATEXT)
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")


def address_text(raw: bytes) -> str:
    """The addresses of a field's value written out as Dovecot writes them for SEARCH:
    `name <mailbox@host>` (the name decoded, quoted unless one word), joined by ", ",
    casefolded."""
    out = []
    for name, _route, mailbox, host in address_list(raw):
        if mailbox is None and host is None:
            continue                  # the end of a group
        local = mailbox.decode("utf-8", "replace") if mailbox else ""
        spec = (local if _DOT_ATOM.fullmatch(local) else _quoted(local)) + \
            ("@" + host.decode("utf-8", "replace") if host else "")
        if name:
            text = decode_header_text(name)
            out.append(f"{text if _ATOM.fullmatch(text) else _quoted(text)} <{spec}>")
        else:
            out.append(spec)
    return ", ".join(out).casefold()


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _body_text(part: mime.Part) -> str:
    """Decoded text of every text/* leaf (transfer encoding and charset undone)."""
    chunks: list[str] = []
    _collect_text(part, chunks, 0)
    return "\n".join(chunks).casefold()


def _collect_text(part: mime.Part, out: list, depth: int) -> None:
    if depth > 20:
        return
    if part.is_multipart:
        for child in part.children:
            _collect_text(child, out, depth + 1)
        return
    if part.message is not None:
        out.append(decode_header_text(part.message.header_bytes()))
        _collect_text(part.message, out, depth + 1)
        return
    body = part.body_bytes()
    enc = (part.header("content-transfer-encoding") or b"").strip().lower()
    try:
        if enc == b"base64":
            body = base64.b64decode(b"".join(body.split()), validate=False)
        elif enc == b"quoted-printable":
            body = quopri.decodestring(body)
    except (binascii.Error, ValueError):
        pass
    if part.type != "text":
        return
    out.append(charsets.decode(body, part.param("charset")))
