"""Sections of an account's active Sieve script that mailctl writes (`mailctl autoreply`,
and `mailctl rule` later), beside whatever the user wrote by hand, which is left alone.

A section is two marked blocks, since Sieve wants every `require` before other commands:

    # BEGIN mailctl autoreply: requires (written by mailctl; change it with `mailctl autoreply`)
    require ["vacation", "date", "relational"];
    # END mailctl autoreply: requires
    ... the user's own require commands ...
    # BEGIN mailctl autoreply (written by mailctl; change it with `mailctl autoreply`)
    if ... { vacation ...; }
    # END mailctl autoreply
    ... the rest of the user's script ...

The requires go first, the body right after the user's leading `require` commands (so a
user's `stop` later cannot keep it from running). With no active script, a script named
`mailctl` is made and activated. Every change is checked to compile before it is written
(atomically, by engine/sieve/scripts.py).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import InvalidInput
from . import scripts
from .lexer import SieveError, tokenize

OWN_SCRIPT = "mailctl"
_BEGIN = "# BEGIN mailctl {name}{part} (written by mailctl; change it with `mailctl {name}`)"
_END = "# END mailctl {name}{part}"


def _block(name: str, part: str, lines: list[str]) -> list[str]:
    return [_BEGIN.format(name=name, part=part), *lines, _END.format(name=name, part=part)]


def _without(lines: list[str], name: str) -> list[str]:
    """The lines with every block of section name removed."""
    out, inside = [], False
    begin = re.compile(rf"# BEGIN mailctl {re.escape(name)}(: requires)? \(")
    end = re.compile(rf"# END mailctl {re.escape(name)}(: requires)?\Z")
    for line in lines:
        if begin.match(line):
            inside = True
        elif inside and end.match(line.rstrip()):
            inside = False
        elif not inside:
            out.append(line)
    return out


def _after_requires(text: str) -> int:
    """How many lines of text hold its leading require commands (0 when none)."""
    try:
        tokens = tokenize(text)
    except SieveError as e:
        raise InvalidInput(f"the active Sieve script does not compile ({e}); fix it before mailctl "
                           f"adds to it") from None
    at, last = 0, 0
    while at < len(tokens) and tokens[at].kind == "ident" and str(tokens[at].value).lower() == "require":
        while at < len(tokens) and tokens[at].kind != ";":
            at += 1
        if at < len(tokens):
            last = tokens[at].line
        at += 1
    return last


def section_lines(text: str, name: str) -> list[str] | None:
    """The body lines of section name in a script's text, or None."""
    lines = text.splitlines()
    begin = _BEGIN.format(name=name, part="")
    if begin not in lines:
        return None
    start = lines.index(begin) + 1
    return lines[start:lines.index(_END.format(name=name, part=""), start)]


def read_section(home: Path, name: str) -> list[str] | None:
    """The body lines of section name in the active script, or None."""
    active = scripts.active_script(home)
    return None if active is None else section_lines(active[1], name)


def edited(text: str, name: str, requires: list[str], body: list[str] | None) -> str:
    """text with section name (its requires and body lines) put in, replacing it if there;
    body None takes it out."""
    lines = _without(text.splitlines(), name)
    if body is not None:
        at = _after_requires("\n".join(lines) + "\n")
        head = _block(name, ": requires", [f"require {_string_list(requires)};"]) if requires else []
        lines = [*head, *lines[:at], *_block(name, "", body), *lines[at:]]
    return "\n".join(lines).strip("\n") + "\n" if any(line.strip() for line in lines) else ""


def write_section(home: Path, name: str, requires: list[str], body: list[str] | None) -> str:
    """Put section name into the account's active script (a new script `mailctl`, activated,
    when it has none); body None removes it. The script's name is returned."""
    active = scripts.active_script(home)
    script_name, text = active if active is not None else (OWN_SCRIPT, "")
    new = edited(text, name, requires, body)
    if active is None and not new:
        return script_name
    scripts.put_script(home, script_name, new)
    if active is None:
        scripts.activate(home, script_name)
    return script_name


def _string_list(items: list[str]) -> str:
    return "[" + ", ".join(quote(i) for i in items) + "]"


def quote(text: str) -> str:
    """A Sieve quoted string (RFC 5228 §2.4.2: only \\ and \" are escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
