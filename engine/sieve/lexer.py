"""Sieve's tokens (RFC 5228 §8.1): identifiers, tags, numbers, strings, punctuation.

Strict on purpose: anything the grammar does not allow is a SieveError naming the line,
so a script that Pigeonhole refuses is refused here too (and its owner sees where)."""
from __future__ import annotations

from dataclasses import dataclass

MAX_SCRIPT = 512 * 1024          # bytes of script text (Pigeonhole: sieve_max_script_size 1M)
MAX_STRING = 64 * 1024           # characters in one string
MAX_TOKENS = 100_000

_MULT = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
MAX_NUMBER = (1 << 63) - 1
_IDENT_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT = _IDENT_START | set("0123456789")
_PUNCT = set("[](){},;")


class SieveError(Exception):
    """A script that cannot run: the text says the line ("line 3: ..."). Never carries a
    server path, so it may be shown to the script's owner."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


@dataclass(frozen=True)
class Token:
    kind: str          # "ident", "tag", "number", "string", or the punctuation itself
    value: object
    line: int


def tokenize(text: str) -> list[Token]:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SCRIPT:
        raise SieveError(0, f"script larger than {MAX_SCRIPT} bytes")
    tokens: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c in " \t":
            i += 1
        elif c == "\r" or c == "\n":
            if c == "\r" and text[i + 1:i + 2] != "\n":
                raise SieveError(line, "bare CR")
            line += 1 if c == "\n" else 0
            i += 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise SieveError(line, "unterminated comment")
            line += text.count("\n", i, j)
            i = j + 2
        elif c in _PUNCT:
            tokens.append(Token(c, c, line))
            i += 1
        elif c == '"':
            value, j = _quoted(text, i + 1, line)
            tokens.append(Token("string", _crlf(value), line))
            line += text.count("\n", i, j)
            i = j
        elif c == ":":
            j = i + 1
            if j >= n or text[j] not in _IDENT_START:
                raise SieveError(line, "':' not followed by a tag name")
            while j < n and text[j] in _IDENT:
                j += 1
            tokens.append(Token("tag", text[i + 1:j].lower(), line))
            i = j
        elif c.isdigit() and c.isascii():
            j = i
            while j < n and text[j].isascii() and text[j].isdigit():
                j += 1
            value = int(text[i:j])
            if j < n and text[j].upper() in _MULT:
                value *= _MULT[text[j].upper()]
                j += 1
            if j < n and text[j] in _IDENT:
                raise SieveError(line, f"bad number {text[i:j + 1]!r}")
            if value > MAX_NUMBER:
                raise SieveError(line, "number too large")
            tokens.append(Token("number", value, line))
            i = j
        elif c in _IDENT_START:
            j = i
            while j < n and text[j] in _IDENT:
                j += 1
            word = text[i:j].lower()
            if word == "text" and text.startswith(":", j):
                value, end = _multiline(text, j + 1, line)
                tokens.append(Token("string", _crlf(value), line))
                line += text.count("\n", i, end)
                i = end
                continue
            tokens.append(Token("ident", word, line))
            i = j
        else:
            raise SieveError(line, f"unexpected character {c!r}")
        if len(tokens) > MAX_TOKENS:
            raise SieveError(line, "script has too many tokens")
    return tokens


def _crlf(value: str) -> str:
    """A string's line ends are CRLF whatever the script file used (as Pigeonhole)."""
    return value.replace("\r\n", "\n").replace("\n", "\r\n") if "\n" in value else value


def _quoted(text: str, i: int, line: int) -> tuple[str, int]:
    out: list[str] = []
    n = len(text)
    start = i
    while i < n:
        c = text[i]
        if c == '"':
            if i - start > MAX_STRING:
                raise SieveError(line, "string too long")
            return "".join(out), i + 1
        if c == "\\" and i + 1 < n:        # \" and \\ mean the character; others drop the '\'
            out.append(text[i + 1])
            i += 2
            continue
        if c == "\r" and text[i + 1:i + 2] != "\n":
            raise SieveError(line, "bare CR in string")
        out.append(c)
        i += 1
    raise SieveError(line, "unterminated string")


def _multiline(text: str, i: int, line: int) -> tuple[str, int]:
    """text: [blanks] [comment] CRLF, then lines up to a line holding only '.'; a line
    starting with '.' has that dot doubled (RFC 5228 §2.4.2)."""
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if text.startswith("#", i):
        i = text.find("\n", i)
        i = n if i < 0 else i
    if text.startswith("\r\n", i):
        i += 2
    elif text.startswith("\n", i):
        i += 1
    else:
        raise SieveError(line, "text: must be followed by a line end")
    out: list[str] = []
    while i < n:
        j = text.find("\n", i)
        if j < 0:
            break
        row = text[i:j + 1]
        if row.rstrip("\r\n") == ".":
            value = "".join(out)
            if len(value) > MAX_STRING:
                raise SieveError(line, "string too long")
            return value, j + 1
        out.append(row[1:] if row.startswith("..") else row)
        i = j + 1
    raise SieveError(line, "unterminated multi-line string (no line with '.' alone)")
