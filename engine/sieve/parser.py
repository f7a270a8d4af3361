"""Sieve's grammar (RFC 5228 §8.2) into a tree of Commands and Tests, strictly.

The tree holds only what was written: which commands and tests exist and which
arguments they take is the interpreter's check (engine/sieve/check.py), run once after
parsing so a bad script is refused before any message sees it."""
from __future__ import annotations

from dataclasses import dataclass

from .lexer import SieveError, Token, tokenize

MAX_DEPTH = 32           # nested blocks and tests (Pigeonhole refuses deep nesting too)
MAX_COMMANDS = 10_000    # commands and tests in one script


@dataclass
class Tag:
    name: str


@dataclass
class Test:
    name: str
    args: list            # Tag, int, or list[str] (a string list; a single string is [s])
    tests: list           # sub-tests (allof, anyof, not)
    line: int


@dataclass
class Command:
    name: str
    args: list
    tests: list
    block: list | None    # the commands inside { }, None when it ended with ';'
    line: int


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.pos = 0
        self.count = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def line(self) -> int:
        tok = self.peek()
        return tok.line if tok else (self.tokens[-1].line if self.tokens else 1)

    def take(self, kind: str) -> Token:
        tok = self.peek()
        if tok is None or tok.kind != kind:
            found = "end of script" if tok is None else repr(tok.value) if tok.kind != "string" else "a string"
            raise SieveError(self.line(), f"expected {kind!r}, found {found}")
        self.pos += 1
        return tok

    def counted(self) -> None:
        self.count += 1
        if self.count > MAX_COMMANDS:
            raise SieveError(self.line(), f"more than {MAX_COMMANDS} commands")

    def commands(self, depth: int) -> list[Command]:
        out = []
        while (tok := self.peek()) is not None and tok.kind != "}":
            out.append(self.command(depth))
        return out

    def command(self, depth: int) -> Command:
        tok = self.take("ident")
        self.counted()
        args, tests = self.arguments(depth, allow_tests=True)
        nxt = self.peek()
        if nxt is not None and nxt.kind == ";":
            self.pos += 1
            return Command(tok.value, args, tests, None, tok.line)
        if nxt is not None and nxt.kind == "{":
            if depth + 1 > MAX_DEPTH:
                raise SieveError(nxt.line, f"blocks nested deeper than {MAX_DEPTH}")
            self.pos += 1
            block = self.commands(depth + 1)
            self.take("}")
            return Command(tok.value, args, tests, block, tok.line)
        raise SieveError(self.line(), f"expected ';' or '{{' after {tok.value}")

    def arguments(self, depth: int, allow_tests: bool) -> tuple[list, list]:
        args: list = []
        while (tok := self.peek()) is not None:
            if tok.kind == "tag":
                args.append(Tag(tok.value))
                self.pos += 1
            elif tok.kind == "number":
                args.append(tok.value)
                self.pos += 1
            elif tok.kind in ("string", "["):
                args.append(self.string_list())
            else:
                break
        tests: list = []
        tok = self.peek()
        if tok is not None and tok.kind == "(":
            self.pos += 1
            tests.append(self.test(depth + 1))
            while self.peek() is not None and self.peek().kind == ",":
                self.pos += 1
                tests.append(self.test(depth + 1))
            self.take(")")
        elif tok is not None and tok.kind == "ident":
            tests.append(self.test(depth + 1))
        return args, tests

    def test(self, depth: int) -> Test:
        if depth > MAX_DEPTH:
            raise SieveError(self.line(), f"tests nested deeper than {MAX_DEPTH}")
        tok = self.take("ident")
        self.counted()
        args, tests = self.arguments(depth, allow_tests=True)
        return Test(tok.value, args, tests, tok.line)

    def string_list(self) -> list[str]:
        tok = self.peek()
        if tok.kind == "string":
            self.pos += 1
            return [tok.value]
        self.take("[")
        items = [self.take("string").value]
        while self.peek() is not None and self.peek().kind == ",":
            self.pos += 1
            items.append(self.take("string").value)
        self.take("]")
        return items


def parse(text: str) -> list[Command]:
    """The script's commands, or SieveError("line N: ...")."""
    tokens = tokenize(text)
    p = _Parser(tokens)
    commands = p.commands(0)
    if p.peek() is not None:
        raise SieveError(p.line(), "unexpected '}'")
    return commands
