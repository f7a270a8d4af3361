"""The mailto notification method of Sieve's enotify (RFC 5435, RFC 5436; URIs: RFC 6068):
a URI read into its recipients and header fields, each checked.

    parse("mailto:alert@example.net?subject=New%20mail") -> Mailto(to=[...], cc=[...], subject, body)

A URI that is not mailto:, or names a bad address, is SieveError (Pigeonhole refuses it when
the script compiles when the URI is a constant, and so do we; at run time otherwise).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from .lexer import SieveError

_ADDRESS = re.compile(r"[^@\s\"<>(),;:\\\[\]]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z0-9-]{1,63}\Z")
_ALLOWED_HEADERS = {"to", "cc", "subject", "body"}        # others (from, received ...) are not the script's
MAX_RECIPIENTS = 8


@dataclass
class Mailto:
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    subject: str = ""
    body: str = ""


def _addresses(text: str, line: int) -> list[str]:
    out = []
    for piece in unquote(text).split(","):
        address = piece.strip()
        if not address:
            continue
        if not _ADDRESS.match(address):
            raise SieveError(line, f"notify: mailto URI: invalid address {address[:80]!r}")
        out.append(address)
    return out


def parse(uri: str, line: int = 0) -> Mailto:
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() != "mailto":
        raise SieveError(line, f"notify: invalid method {scheme[:20]!r}")
    to_part, _, query = rest.partition("?")
    found = Mailto(to=_addresses(to_part, line))
    for item in query.split("&") if query else []:
        name, _, value = item.partition("=")
        name = unquote(name).lower()
        if name in ("to", "cc"):
            getattr(found, name).extend(_addresses(value, line))
        elif name in ("subject", "body"):
            setattr(found, name, unquote(value))
        elif name not in _ALLOWED_HEADERS:
            continue                     # RFC 5436 §2.2: other fields are ignored
    if not found.to and not found.cc:
        raise SieveError(line, "notify: mailto URI names no recipient")
    if len(found.to) + len(found.cc) > MAX_RECIPIENTS:
        raise SieveError(line, f"notify: more than {MAX_RECIPIENTS} recipients")
    return found
