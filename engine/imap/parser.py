"""Parsing IMAP command lines (RFC 3501 §9) into tokens.

A command arrives as one line, or as lines joined by literals: `{n}` (or `{n+}`,
RFC 7888) at the end of a line announces n raw bytes that follow its CRLF. The
session's reader collects the whole command into one bytes object with the literals
in place; `tokenize` then walks it:

    Atom     a str subclass: commands, flags (\\Seen), NIL, sequence sets, fetch items
             (BODY[HEADER.FIELDS (To)]<0.10> stays one atom)
    bytes    a quoted string or a literal
    list     a parenthesised list

Hostile input is bounded: nesting depth, literal sizes and token counts all raise
ParseError, which the session answers with BAD.
"""
from __future__ import annotations

import re

MAX_DEPTH = 64
MAX_TOKENS = 100_000

LITERAL_AT_END = re.compile(rb"~?\{(\d+)(\+?)\}\r?\n?$")
HUGE_LITERAL = 10 ** 20          # the size given to an announcement of more than 20 digits


class ParseError(Exception):
    """The command is malformed; the text is the reason given with BAD."""


class Literal8(bytes):
    """The bytes of a literal8 (~{n}, RFC 3516): they may be binary, not lines."""


class Literal(bytes):
    """The bytes of a literal, told apart from a quoted string where the grammar needs it
    (APPEND: a date-time is quoted, a message is a literal). tokenize gives it only when
    asked (spooled=...); everywhere else a literal is plain bytes."""


class Atom(str):
    """An IMAP atom (as opposed to a string that happens to look like one)."""

    def upper_is(self, word: str) -> bool:
        return self.upper() == word


_ATOM_STOP = set(b' ()"{\r\n')
# The fetch items whose '[' opens a section spec (RFC 3501 §9, RFC 3516); anywhere else
# '[' is an ATOM-CHAR, as in the mailbox name foo[bar.
_SECTION_ITEMS = {b"BODY", b"BODY.PEEK", b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE"}


def tokenize(data: bytes, max_depth: int = MAX_DEPTH, spooled: dict | None = None) -> list:
    """Tokens of a complete command (without its final CRLF).

    spooled (APPEND): the objects standing for literals the reader wrote to files, by the
    offset of their (empty) literal in data; every other literal then comes as a Literal
    (or Literal8), so a quoted string is told apart from a literal."""
    pos = 0
    n = len(data)
    root: list = []
    stack: list[list] = [root]
    count = 0
    while pos < n:
        c = data[pos]
        if c == 0x20:
            pos += 1
            continue
        count += 1
        if count > MAX_TOKENS:
            raise ParseError("too many tokens")
        if c == 0x28:  # (
            if len(stack) > max_depth:
                raise ParseError(f"parentheses nested deeper than {max_depth}")
            new: list = []
            stack[-1].append(new)
            stack.append(new)
            pos += 1
        elif c == 0x29:  # )
            if len(stack) == 1:
                raise ParseError("unbalanced ')'")
            stack.pop()
            pos += 1
        elif c == 0x22:  # "
            value, pos = _quoted(data, pos)
            stack[-1].append(value)
        elif c == 0x7B or (c == 0x7E and pos + 1 < n and data[pos + 1] == 0x7B):  # { or ~{
            start = pos
            value, pos = _literal(data, pos)
            if spooled is not None:
                value = spooled.get(start) or (value if type(value) is Literal8 else Literal(value))
            stack[-1].append(value)
        elif c < 0x20 or c == 0x7F:
            raise ParseError(f"control character 0x{c:02x} in command")
        else:
            value, pos = _atom(data, pos)
            stack[-1].append(value)
    if len(stack) != 1:
        raise ParseError("unbalanced '('")
    return root


def _quoted(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    pos += 1
    n = len(data)
    while pos < n:
        c = data[pos]
        if c == 0x5C:  # backslash: only \" and \\ are allowed
            if pos + 1 >= n or data[pos + 1] not in (0x22, 0x5C):
                raise ParseError("bad escape in quoted string")
            out.append(data[pos + 1])
            pos += 2
        elif c == 0x22:
            return bytes(out), pos + 1
        elif c in (0x0D, 0x0A, 0x00):
            raise ParseError("CR, LF or NUL in quoted string")
        else:
            out.append(c)
            pos += 1
    raise ParseError("unterminated quoted string")


def _literal(data: bytes, pos: int) -> tuple[bytes, int]:
    kind = bytes
    if data[pos] == 0x7E:
        kind = Literal8
        pos += 1
    end = data.find(b"}", pos)
    if end < 0:
        raise ParseError("bad literal")
    spec = data[pos + 1:end]
    if spec.endswith(b"+"):
        spec = spec[:-1]
    if not spec.isdigit() or len(spec) > 20:
        raise ParseError("bad literal size")
    size = int(spec)
    start = end + 1
    if data[start:start + 2] == b"\r\n":
        start += 2
    elif data[start:start + 1] == b"\n":
        start += 1
    else:
        raise ParseError("literal size not at end of line")
    if start + size > len(data):
        raise ParseError("literal shorter than announced")
    return kind(data[start:start + size]), start + size


# The usual atom, a run of bytes with no stop byte, control or '[', found by the regex
# engine instead of a Python loop over its bytes (each command's tag, name and items).
_PLAIN_RUN = re.compile(rb'[^ ()"{\x00-\x1f\x7f\[]*')
# A section spec without nested brackets, strings, literals or control bytes: "[]",
# "[HEADER.FIELDS (From To)]" up to and including its ']'.
_PLAIN_SECTION = re.compile(rb'\[[^\[\]\x00-\x1f{"]*\]')


def _atom(data: bytes, pos: int) -> tuple[Atom, int]:
    """An atom from pos; a section spec after BODY/BINARY items may hold spaces and lists.
    The common shapes go by regex; anything else by _atom_slowly, whose answer it is."""
    end = _PLAIN_RUN.match(data, pos).end()
    while end < len(data) and data[end] == 0x5B:     # '['
        if data[pos:end].upper() not in _SECTION_ITEMS:
            return _atom_slowly(data, pos)
        m = _PLAIN_SECTION.match(data, end)
        if m is None:
            return _atom_slowly(data, pos)
        end = _PLAIN_RUN.match(data, m.end()).end()
        if end < len(data) and data[end] == 0x5B:
            return _atom_slowly(data, pos)
    try:
        return Atom(data[pos:end].decode("ascii")), end
    except UnicodeDecodeError:
        raise ParseError("8-bit characters in an atom; send them as a literal") from None


def _atom_slowly(data: bytes, pos: int) -> tuple[Atom, int]:
    start = pos
    n = len(data)
    depth = 0
    while pos < n:
        c = data[pos]
        if c == 0x5B and (depth or data[start:pos].upper() in _SECTION_ITEMS):
            depth += 1  # a section spec, which may hold spaces and lists
        elif c == 0x5D and depth:
            depth -= 1
        elif depth:
            if c in (0x0D, 0x0A) or c < 0x20:
                raise ParseError("control character in section")
            if c in (0x7B, 0x22):
                raise ParseError("strings and literals inside a section are not supported")
        elif c in _ATOM_STOP or c < 0x20 or c == 0x7F:
            break
        pos += 1
    if depth:
        raise ParseError("unterminated '['")
    try:
        return Atom(data[start:pos].decode("ascii")), pos
    except UnicodeDecodeError:
        raise ParseError("8-bit characters in an atom; send them as a literal") from None


def literal_announced(line: bytes) -> tuple[int, bool] | None:
    """(size, synchronising) when a command line ends with a literal announcement."""
    if b"}" not in line[-4:]:      # most lines: no regex search over the whole line
        return None
    m = LITERAL_AT_END.search(line)
    if not m:
        return None
    digits = m.group(1)
    # any number of digits is an announcement (the client sends that many bytes next);
    # one too long for int() is simply huge, and refused as such
    size = int(digits) if len(digits) <= 20 else HUGE_LITERAL
    return size, m.group(2) != b"+"


# -- argument helpers -----------------------------------------------------------

def as_text(token, what: str = "argument") -> str:
    """An astring (atom, quoted or literal) as text."""
    if isinstance(token, Atom):
        return str(token)
    if isinstance(token, bytes):
        try:
            return token.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(f"{what} is not valid UTF-8") from None
    raise ParseError(f"{what} must be a string, not a list")


def as_atom(token, what: str = "argument") -> str:
    if not isinstance(token, Atom):
        raise ParseError(f"{what} must be an atom")
    return str(token)


def number(text: str, what: str = "number", nonzero: bool = False) -> int:
    """An IMAP number (RFC 3501 §9: number, nz-number): ASCII digits only, at most
    4294967295. Checked before int() sees it, so no digit string is ever too long for it."""
    if not text or len(text) > 10 or not (text.isascii() and text.isdigit()):
        raise ParseError(f"{what} must be a number" + (f", not {text[:20]!r}" if text else ""))
    value = int(text)
    if value > 0xFFFFFFFF or (nonzero and value == 0):
        raise ParseError(f"{what} out of range: {text}")
    return value


def as_number(token, what: str = "number") -> int:
    if not isinstance(token, Atom):
        raise ParseError(f"{what} must be a number")
    return number(str(token), what)


# -- sequence sets (RFC 3501 §9 sequence-set) --------------------------------------

def parse_sequence_set(text: str) -> list[tuple[int | None, int | None]]:
    """Ranges of a sequence set; None stands for '*'. Raises ParseError when malformed.

    '$' (SEARCHRES) is not supported."""
    if not text or len(text) > 100_000:
        raise ParseError("bad sequence set")
    out = []
    for part in text.split(","):
        first, colon, second = part.partition(":")
        if colon and not second:
            raise ParseError(f"bad sequence set {text[:40]!r}")
        a = _seq_number(first, text)
        b = _seq_number(second, text) if colon else a
        out.append((a, b))
    return out


def _seq_number(text: str, whole: str) -> int | None:
    if text == "*":
        return None
    return number(text, f"sequence number in {whole[:40]!r}", nonzero=True)


def expand_sequence_set(ranges, largest: int) -> "SequenceMatcher":
    return SequenceMatcher(ranges, largest)


class SequenceMatcher:
    """Membership test for a parsed sequence set, with '*' resolved to `largest`."""

    def __init__(self, ranges, largest: int):
        self.ranges = []
        for a, b in ranges:
            a = largest if a is None else a
            b = largest if b is None else b
            if a > b:
                a, b = b, a
            self.ranges.append((a, b))

    def __contains__(self, n: int) -> bool:
        for a, b in self.ranges:
            if a <= n <= b:
                return True
        return False

    def select(self, values: list[int]) -> list[int]:
        """The members of the sorted list `values` (e.g. UIDs or sequence numbers)."""
        import bisect
        out = set()
        for a, b in self.ranges:
            lo = bisect.bisect_left(values, a)
            hi = bisect.bisect_right(values, b)
            out.update(range(lo, hi))
        return sorted(out)
