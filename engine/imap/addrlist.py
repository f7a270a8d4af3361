"""RFC 5322 address lists as ENVELOPE address structures (RFC 3501 §7.4.2): name, source
route, mailbox, host, with a group as the start and end markers the RFC prescribes.

Read as Dovecot reads them where the RFC leaves it open: comments (nested ones too) and
white space inside an addr-spec are dropped (`user (x) @ host` is user@host), and the
old `user@host (Real Name)` form is named by its comment. Lenient: any bytes give a
list, never an exception.
"""
from __future__ import annotations

import re

# white space | a quoted string (to its end if unterminated) | a comment's start |
# an angle address | a special | an atom (anything else up to the next of those)
_TOKEN = re.compile(rb'([ \t\r\n]+)|"((?:[^"\\]|\\.)*)"?|(\()|(<[^>]*>?)|([,:;@.])|([^ \t\r\n"(<,:;@.]+)',
                    re.DOTALL)
_ESCAPED = re.compile(rb"\\(.)", re.DOTALL)
_SPACES = re.compile(rb"[ \t\r\n]+")
_PLAIN_SPEC = re.compile(rb'[^ \t\r\n"(<>,:;@\\]+@[^ \t\r\n"(<>,:;@\\]+')


def address_list(value: bytes) -> list:
    """[[name, adl, mailbox, host], ...] of a field's value (bytes or None each)."""
    out: list = []
    current: list = []
    in_group = False
    for tok in _tokens(value):
        kind = tok[0]
        if kind == b",":
            _flush(current, out)
            current = []
        elif kind == b":" and not in_group and not any(t[0] in (b"<", b"@") for t in current):
            out.append([None, None, _phrase(current), None])
            current, in_group = [], True
        elif kind == b";" and in_group:
            _flush(current, out)
            current, in_group = [], False
            out.append([None, None, None, None])
        else:
            current.append(tok)
    _flush(current, out)
    if in_group:
        out.append([None, None, None, None])
    return out


def _tokens(value: bytes) -> list[tuple[bytes, bytes, bool]]:
    """(kind, text, spaced): kind is b"w" (an atom), b'"' (a quoted string's content),
    b"(" (a comment's content), b"<" (an angle address's content) or the special itself;
    spaced: white space or a comment came before it."""
    out = []
    pos, n, spaced = 0, len(value), False
    while pos < n:
        m = _TOKEN.match(value, pos)
        if m is None:  # cannot happen: every byte starts some token; stop rather than loop
            break
        pos = m.end()
        if m.group(1):
            spaced = True
            continue
        if m.group(2) is not None:
            out.append((b'"', _ESCAPED.sub(rb"\1", m.group(2)), spaced))
        elif m.group(3):
            text, pos = _comment(value, pos)
            out.append((b"(", text, spaced))
            spaced = True
            continue
        elif m.group(4):
            angle = m.group(4)
            out.append((b"<", angle[1:-1] if angle.endswith(b">") else angle[1:], spaced))
        elif m.group(5):
            out.append((m.group(5), m.group(5), spaced))
        else:
            out.append((b"w", m.group(6), spaced))
        spaced = False
    return out


def _comment(value: bytes, pos: int) -> tuple[bytes, int]:
    """The content of the comment whose "(" ends at pos, nested comments kept; to the
    end of the value when unterminated."""
    depth, start, n = 1, pos, len(value)
    while pos < n:
        c = value[pos]
        if c == 0x5C:    # backslash: the next byte is taken as it is
            pos += 2
            continue
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return value[start:pos], pos + 1
        pos += 1
    return value[start:n], n


def _phrase(tokens: list) -> bytes:
    """A display name or group name: its words, quoted strings unquoted, comments dropped."""
    out: list[bytes] = []
    for kind, text, spaced in tokens:
        if kind == b"(" or kind == b"<":
            continue
        if spaced and out:
            out.append(b" ")
        out.append(text)
    return b"".join(out).strip()


def _flush(tokens: list, out: list) -> None:
    """The address made of the tokens between two commas, when they hold one."""
    angle = next((i for i, t in enumerate(tokens) if t[0] == b"<"), None)
    if angle is not None:
        name = _phrase(tokens[:angle])
        content = tokens[angle][1]
        if _PLAIN_SPEC.fullmatch(content):    # the usual <user@host>, without tokenizing it
            mailbox, _, host = content.rpartition(b"@")
            adl = None
        else:
            adl, mailbox, host = _spec([t for t in _tokens(content) if t[0] != b"("])
    else:
        words = [t for t in tokens if t[0] != b"("]
        if not words:
            return                    # nothing, or only a comment
        first = tokens.index(words[0])
        comments = [t[1] for t in tokens[first:] if t[0] == b"("]
        # user@host (Real Name): the last comment after the address names it
        name = _SPACES.sub(b" ", comments[-1]).strip() if comments else b""
        adl, mailbox, host = _spec(words)
    if name or mailbox or host:       # <> alone is no address
        out.append([name or None, adl, mailbox or None, host or None])


def _spec(tokens: list) -> tuple[bytes | None, bytes, bytes]:
    """(source route, local part, domain) of an addr-spec's tokens (comments removed)."""
    adl = None
    colons = [i for i, t in enumerate(tokens) if t[0] == b":"]
    if colons:     # @a,@b:user@host
        adl = b"".join(t[1] for t in tokens[:colons[-1]]) or None
        tokens = tokens[colons[-1] + 1:]
    ats = [i for i, t in enumerate(tokens) if t[0] == b"@"]
    if not ats:
        return adl, _joined(tokens), b""
    return adl, _joined(tokens[:ats[-1]]), _joined(tokens[ats[-1] + 1:])


def _joined(tokens: list) -> bytes:
    """Tokens of a local part or domain as one text: white space kept only between two
    words (`broken text`), dropped around dots (`a . b` is a.b)."""
    out: list[bytes] = []
    prev = None
    for kind, text, spaced in tokens:
        if spaced and prev in (b"w", b'"') and kind in (b"w", b'"'):
            out.append(b" ")
        out.append(text)
        prev = kind
    return b"".join(out).strip()
