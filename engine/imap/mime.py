"""A small MIME parser that keeps byte offsets, for BODY[section], ENVELOPE and
BODYSTRUCTURE (RFC 3501 §6.4.5, §7.4.2).

It works on the message as served (CRLF line ends) and never changes it: every part is
a (header, body) byte range of the original, so any section can be sliced exactly.
Malformed structure degrades to text/plain, as other servers do; it never raises.
"""
from __future__ import annotations

import re

from .addrlist import address_list

MAX_PARTS_DEPTH = 40
MAX_PARTS = 5000

_UNFOLD = re.compile(rb"\r?\n[ \t]")


def split_header(data: bytes, start: int, end: int) -> int:
    """Offset where the body starts (just after the blank line ending the header)."""
    if data.startswith(b"\r\n", start):
        return start + 2
    i = data.find(b"\r\n\r\n", start, end)
    if i < 0:
        return end
    return i + 4


def parse_headers(raw: bytes) -> list[tuple[str, bytes]]:
    """(lower-case name, unfolded raw value) pairs in order."""
    out = []
    for line in _UNFOLD.sub(b" ", raw).split(b"\r\n"):
        if not line or line[:1] in b" \t":
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii").lower()
        except UnicodeDecodeError:
            continue
        out.append((key, value.strip()))
    return out


def parse_params(value: bytes) -> tuple[str, list[tuple[str, str]]]:
    """'text/plain; charset="utf-8"' -> ('text/plain', [('charset', 'utf-8')])."""
    text = value.decode("utf-8", "replace")
    items = _split_semicolons(text)
    main = items[0].strip() if items else ""
    params = []
    for item in items[1:]:
        name, sep, val = item.partition("=")
        if not sep:
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == '"' and val[-1] == '"':
            val = re.sub(r'\\(.)', r'\1', val[1:-1])
        params.append((name.strip().lower(), val))
    return main, params


def _split_semicolons(text: str) -> list[str]:
    out, cur, quoted, esc = [], [], False, False
    for ch in text:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\" and quoted:
            cur.append(ch)
            esc = True
        elif ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == ";" and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


class Part:
    """One MIME entity: header [start, body_start), body [body_start, end).

    Everything past the header split is computed on first use, so a FETCH of one
    header field or of BODY[] never parses the rest of the message."""

    __slots__ = ("data", "start", "body_start", "end", "_headers", "_type", "_children",
                 "_message", "default_type", "depth", "budget", "_index")

    def __init__(self, data: bytes, start: int, end: int, default_type=("text", "plain"),
                 depth: int = 0, budget: list | None = None):
        self.data = data
        self.start = start
        self.end = end
        self.body_start = split_header(data, start, end)
        self.default_type = default_type
        self.depth = depth
        self.budget = budget if budget is not None else [MAX_PARTS]
        self._headers = None
        self._index = None
        self._type = None
        self._children = None
        self._message = None

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        if self._headers is None:
            self._headers = parse_headers(self.data[self.start:self.body_start])
        return self._headers

    def _content_type(self):
        if self._type is None:
            ctype = self.header("content-type")
            t, st = self.default_type
            params: list[tuple[str, str]] = []
            if ctype is not None:
                main, ps = parse_params(ctype)
                a, sep, b = main.partition("/")
                if sep and a.strip() and b.strip():
                    t, st, params = a.strip().lower(), b.strip().lower(), ps
                else:
                    t, st, params = "text", "plain", [("charset", "us-ascii")]
            elif self.default_type == ("text", "plain"):
                params = [("charset", "us-ascii")]
            self._type = (t, st, params)
        return self._type

    @property
    def type(self) -> str:
        return self._content_type()[0]

    @property
    def subtype(self) -> str:
        return self._content_type()[1]

    @property
    def params(self) -> list[tuple[str, str]]:
        return self._content_type()[2]

    @property
    def children(self) -> list["Part"]:
        if self._children is None:
            self._children = []
            if self.type == "multipart" and self._may_descend():
                boundary = self.param("boundary")
                if boundary:
                    sub_default = ("message", "rfc822") if self.subtype == "digest" else ("text", "plain")
                    for s, e in _split_multipart(self.data, self.body_start, self.end,
                                                 boundary.encode("utf-8", "replace")):
                        self._children.append(Part(self.data, s, e, sub_default, self.depth + 1, self.budget))
                if not self._children:
                    # RFC 3501 needs at least one part; treat a broken multipart as text.
                    self._type = ("text", "plain", [("charset", "us-ascii")])
        return self._children

    @property
    def message(self) -> "Part | None":
        if self._message is None and self.type == "message" and self.subtype in ("rfc822", "global") \
                and self._may_descend():
            self._message = Part(self.data, self.body_start, self.end, ("text", "plain"),
                                 self.depth + 1, self.budget)
        return self._message

    def enclosed(self) -> "Part | None":
        """The message a message/rfc822 part encloses as BODYSTRUCTURE shows it: parsed,
        or past the depth or part limit one opaque part (its body not parsed further)."""
        inner = self.message
        if inner is None and self.type == "message" and self.subtype == "rfc822":
            inner = Part(self.data, self.body_start, self.end, depth=self.depth + 1, budget=[0])
        return inner

    def _may_descend(self) -> bool:
        self.budget[0] -= 1
        return self.depth < MAX_PARTS_DEPTH and self.budget[0] > 0

    def header(self, name: str) -> bytes | None:
        """The first field of that (lower-case) name."""
        index = self._index
        if index is None:
            index = {}
            for k, v in reversed(self.headers):
                index[k] = v
            self._index = index
        return index.get(name)

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name:
                return v
        return None

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart" and bool(self.children)

    def header_bytes(self) -> bytes:
        return self.data[self.start:self.body_start]

    def body_bytes(self) -> bytes:
        return self.data[self.body_start:self.end]


def _split_multipart(data: bytes, start: int, end: int, boundary: bytes):
    """(start, end) of each body part between the boundary lines."""
    delim = b"--" + boundary
    positions = []  # (line start, line end incl. CRLF, is_close)
    pos = start
    while True:
        i = data.find(delim, pos, end)
        if i < 0:
            break
        after = i + len(delim)
        if i != start and data[i - 2:i] != b"\r\n":
            pos = after                  # not at the start of a line
            continue
        is_close = data[after:after + 2] == b"--"
        eol = data.find(b"\r\n", after, end)
        line_end = end if eol < 0 else eol + 2
        # RFC 2046: only transport padding may follow, so "--b" never matches a nested
        # part's "--b1" (forwarded messages often carry boundaries sharing a prefix).
        if data[after + 2 * is_close:line_end].strip(b" \t\r\n"):
            pos = line_end
            continue
        positions.append((i, line_end, is_close))
        if is_close:
            break
        pos = line_end
    parts = []
    for (_ls, le, close), nxt in zip(positions, positions[1:] + [None]):
        if close:
            break
        if nxt is None:
            part_end = end
        else:
            part_end = nxt[0] - 2 if nxt[0] - 2 >= le else le  # the CRLF before a delimiter belongs to it
        parts.append((le, part_end))
    return parts


# -- ENVELOPE and BODYSTRUCTURE as nested Python values for the encoder ---------------

def envelope(part: Part) -> list:
    def h(name):
        return part.header(name)

    parsed: dict[bytes, list | None] = {}  # Sender and Reply-To usually repeat From

    def addresses(name, fallback=None):
        value = h(name)
        if value is None and fallback is not None:
            value = h(fallback)
        if value is None or not value.strip():
            return None
        if value not in parsed:
            # env-to = "(" 1*address ")": addresses follow each other without spaces
            parsed[value] = UnspacedList(address_list(value)) or None
        return parsed[value]

    return [h("date"), h("subject"), addresses("from"), addresses("sender", "from"),
            addresses("reply-to", "from"), addresses("to"), addresses("cc"), addresses("bcc"),
            h("in-reply-to"), h("message-id")]


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _params_list(params):
    if not params:
        return None
    out = []
    for k, v in params:
        out += [k.encode("utf-8", "replace").upper() if False else k.encode("utf-8", "replace"),
                v.encode("utf-8", "replace")]
    return out


def _disposition(part: Part):
    value = part.header("content-disposition")
    if value is None:
        return None
    main, params = parse_params(value)
    if not main:
        return None
    return [main.encode(), _params_list(params)]


def _language(part: Part):
    value = part.header("content-language")
    if value is None:
        return None
    langs = [x.strip().encode() for x in value.decode("utf-8", "replace").split(",") if x.strip()]
    return langs or None


def bodystructure(part: Part, extended: bool = True) -> list:
    if part.is_multipart:
        out = [bodystructure(child, extended) for child in part.children]
        out.append(part.subtype.upper().encode())
        if extended:
            out += [_params_list(part.params), _disposition(part), _language(part),
                    part.header("content-location")]
        return UnspacedList(out)
    body = part.body_bytes()
    enc = part.header("content-transfer-encoding")
    out = [part.type.upper().encode(), part.subtype.upper().encode(), _params_list(part.params),
           part.header("content-id"), part.header("content-description"),
           enc.upper() if enc else b"7BIT", len(body)]
    if part.type == "message" and part.subtype == "rfc822":
        # RFC 3501 body-type-msg: envelope, body, lines. message/global gets the basic
        # form, which IMAP4rev1 clients parse (they know only RFC822 as a message type).
        inner = part.enclosed()
        if part.message is None:  # past the depth or part limit: the rest is one opaque part
            structure = _opaque(inner, extended)
        else:
            structure = bodystructure(inner, extended)
        out += [envelope(inner), structure, body.count(b"\n")]
    elif part.type == "text":
        out.append(body.count(b"\n"))
    if extended:
        out += [part.header("content-md5"), _disposition(part), _language(part),
                part.header("content-location")]
    return out


def _opaque(part: Part, extended: bool) -> list:
    """A message not parsed further, as application/octet-stream of its body's size."""
    out = [b"APPLICATION", b"OCTET-STREAM", None, None, None, b"7BIT", part.end - part.body_start]
    return out + [None, None, None, None] if extended else out


class UnspacedList(list):
    """A list whose child lists are written without spaces between them: a multipart
    body structure, an ENVELOPE address list."""


# -- sections (RFC 3501 §6.4.5) -------------------------------------------------------

class SectionError(Exception):
    pass


def find_part(root: Part, numbers: list[int]) -> Part | None:
    """The part BODY[numbers] names (RFC 3501 §6.4.5), as BODYSTRUCTURE numbers them and
    as Dovecot finds it: a multipart's N is its Nth child; a non-multipart part has only
    part 1 (itself: a message's body, or a leaf named once more), and only a
    message/rfc822 part goes deeper: its N.1... are the parts of the message it encloses
    (N.1 the first part of that message's multipart body, or its body when not multipart)."""
    part = root
    last = len(numbers) - 1
    for i, n in enumerate(numbers):
        if part.is_multipart:
            if not 1 <= n <= len(part.children):
                return None
            part = part.children[n - 1]
        elif n != 1 or (i < last and part.enclosed() is None):
            return None            # a leaf has no parts inside
        if i < last and (inner := part.enclosed()) is not None:
            part = inner           # go on inside the enclosed message
    return part


def section_bytes(root: Part, numbers: list[int], text: str, fields: list[str] | None) -> bytes:
    """The bytes of BODY[numbers.text (fields)]; empty bytes for a missing part."""
    part = find_part(root, numbers)
    if part is None:
        return b""
    if not text:
        if not numbers:
            return root.data[root.start:root.end]
        return part.body_bytes()
    if text == "MIME":
        return part.header_bytes() if numbers else b""
    msg = part
    if numbers:
        if part.message is None:
            return b""
        msg = part.message
    if text == "TEXT":
        return msg.body_bytes()
    header = msg.header_bytes()
    if text == "HEADER":
        return header
    keep_matching = text == "HEADER.FIELDS"
    if all(f.isascii() for f in fields or ()):
        # Compared as bytes: an ASCII name matches exactly when its decoded form would.
        wanted_bytes = {f.lower().encode("ascii") for f in fields or ()}
        return b"".join(field for field in _raw_fields(header)
                        if (field.split(b":", 1)[0].strip().lower() in wanted_bytes) == keep_matching) + b"\r\n"
    wanted = {f.lower() for f in fields or ()}
    out = []
    for field in _raw_fields(header):
        name = field.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        if (name in wanted) == keep_matching:
            out.append(field)
    return b"".join(out) + b"\r\n"


def _raw_fields(header: bytes) -> list[bytes]:
    """Header fields with their folded continuation lines, each ending in CRLF."""
    fields: list[bytes] = []
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        elif b":" in line:
            fields.append(line + b"\r\n")
    return fields
