"""ManageSieve's words (RFC 5804 §4): what a client's command line holds, and how the
server writes strings.

A command is an atom and arguments, each an atom (a number, a bare word), a quoted string
("...", with \\" and \\\\ the only escapes; no CR, LF or NUL) or a literal: `{n+}` at the
end of a line and then exactly n octets (`{n}`, a synchronising literal, is taken too:
the server has nothing to say before the octets). The line goes on after the octets.

    read_command(readline, readexactly) -> Command(name, [args]) | None (the client left)

Limits: MAX_LINE octets per line piece, MAX_LITERAL octets per literal (a bigger one ends
the session: it cannot be skipped cheaply), MAX_ARGS arguments. A broken command raises
BadCommand with a text fit for the client.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINE = 8192
MAX_LITERAL = 1024 * 1024 + 4096     # a script at the lexer's limit, with room to say NO (QUOTA/MAXSIZE)
MAX_ARGS = 8
_LITERAL = re.compile(rb"\{(\d{1,10})(\+?)\}\r?\n\Z")
_ATOM = re.compile(rb"[A-Za-z0-9_.:+-]{1,64}")


class BadCommand(Exception):
    """A command line that cannot be read: NO with this text."""


class TooBig(Exception):
    """A literal or line past the limits: the session ends (BYE)."""


@dataclass
class Command:
    name: str                   # upper case
    args: list                  # str (atoms and strings), bytes never: strings are UTF-8 text


async def read_command(readline, readexactly) -> Command | None:
    """One command, its literals read in; None when the client has gone. A broken piece
    is reported (BadCommand) only once the whole command is read: the client sends the
    literals of a {n+} command whatever the server thinks of it."""
    tokens: list = []
    broken: BadCommand | None = None
    while True:
        line = await readline()
        if not line:
            return None
        if len(line) > MAX_LINE:
            raise TooBig("line too long")
        literal = _LITERAL.search(line)
        try:
            _tokens(line[:literal.start()] if literal else line.rstrip(b"\r\n"), tokens)
        except BadCommand as e:
            broken = broken or e
        if not literal:
            break
        size = int(literal.group(1))
        if size > MAX_LITERAL:
            raise TooBig("literal too large")
        try:
            tokens.append(_text(await readexactly(size)))
        except BadCommand as e:
            broken = broken or e
    if broken is not None:
        raise broken
    if len(tokens) > MAX_ARGS + 1:
        raise BadCommand("too many arguments")
    if not tokens or not isinstance(tokens[0], _Atom):
        raise BadCommand("expected a command name")
    return Command(tokens[0].upper(), [str(t) for t in tokens[1:]])


class _Atom(str):
    """A bare word (told apart from a quoted string only for the command name)."""


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadCommand("a string is not UTF-8") from None


def _tokens(body: bytes, out: list) -> None:
    at, end = 0, len(body)
    while at < end:
        c = body[at:at + 1]
        if c == b" ":
            at += 1
        elif c == b'"':
            at = _quoted(body, at + 1, out)
        else:
            m = _ATOM.match(body, at)
            if not m:
                raise BadCommand("unexpected characters in the command")
            out.append(_Atom(m.group().decode("ascii")))
            at = m.end()


def _quoted(body: bytes, at: int, out: list) -> int:
    chunk = bytearray()
    while at < len(body):
        c = body[at]
        if c == 0x22:                                   # "
            out.append(_text(bytes(chunk)))
            return at + 1
        if c == 0x5C:                                   # \
            if at + 1 >= len(body) or body[at + 1] not in (0x22, 0x5C):
                raise BadCommand("a quoted string escapes only \" and \\")
            chunk.append(body[at + 1])
            at += 2
            continue
        if c in (0x00, 0x0D, 0x0A):
            raise BadCommand("a quoted string holds no NUL, CR or LF")
        chunk.append(c)
        at += 1
    raise BadCommand("a quoted string is not closed")


def string(text: str) -> bytes:
    """A string as the server writes it: quoted when it can be, else a literal."""
    raw = text.encode("utf-8")
    if len(raw) <= 1024 and not re.search(rb'[\x00\r\n"\\]', raw):
        return b'"' + raw + b'"'
    return b"{%d}\r\n" % len(raw) + raw
