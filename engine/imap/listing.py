"""LIST and LSUB (RFC 3501 §6.3.8-9): matching mailbox patterns and making the replies.

A pattern's `*` matches anything and `%` anything but the hierarchy delimiter "/". A
backtracking regex costs exponential time in the number of wildcards (a 13-byte
pattern took 37 s), so patterns are matched as a small automaton run over the name
with bit sets: time linear in the name's length times the pattern's length divided by
the machine word, whatever the pattern holds. The whole listing is made in one call,
meant for a worker thread.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import mutf7
from .response import astring


class Pattern:
    """A compiled LIST pattern; `matches(name)` for a name as sent on the wire."""

    def __init__(self, pattern: str):
        tokens: list[str] = []
        for ch in pattern:
            if ch in "*%" and tokens and tokens[-1] in ("*", "%"):
                # Adjacent wildcards match what the wider one alone matches.
                tokens[-1] = "*" if "*" in (ch, tokens[-1]) else "%"
            else:
                tokens.append(ch)
        self.final = 1 << len(tokens)
        self.star = self.percent = 0
        self.literal: dict[str, int] = {}
        # RFC 3501 §5.1: INBOX is case-insensitive, also as the start of a pattern.
        fold = len(tokens) >= 5 and "".join(tokens[:5]).upper() == "INBOX"
        for i, t in enumerate(tokens):
            bit = 1 << i
            if t == "*":
                self.star |= bit
            elif t == "%":
                self.percent |= bit
            else:
                for c in {t, t.upper(), t.lower()} if fold and i < 5 else (t,):
                    self.literal[c] = self.literal.get(c, 0) | bit
        self.wild = self.star | self.percent
        self.ends_with_percent = bool(tokens) and tokens[-1] == "%"

    def _closure(self, states: int) -> int:
        # A wildcard may match nothing; no two wildcards are adjacent, so one step is enough.
        return states | ((states & self.wild) << 1)

    def matches(self, name: str) -> bool:
        states = self._closure(1)
        literal, star, anything = self.literal, self.star, self.star | self.percent
        for c in name:
            stay = star if c == "/" else anything
            states = self._closure(((states & literal.get(c, 0)) << 1) | (states & stay))
            if not states:
                return False
        return bool(states & self.final)


@dataclass
class Options:
    """What the command asks for. LSUB lists subscribed names (RFC 3501 §6.3.9); LIST's
    selection options (RFC 5258 SUBSCRIBED, RFC 6154 SPECIAL-USE) narrow what is listed
    and RETURN (SUBSCRIBED) adds \\Subscribed, a LIST-EXTENDED attribute a plain LIST
    does not give."""
    lsub: bool = False
    subscribed_only: bool = False
    special_use_only: bool = False
    return_subscribed: bool = False


def listing(verb: str, pattern: Pattern, infos, subscribed: set, options: Options) -> bytes:
    """The untagged LIST/LSUB replies for the folders `infos` (maildir.list_folders)."""
    existing = {i.name: i for i in infos}
    parents = _ancestors(existing)
    names = parents | set(existing)
    if options.lsub or options.subscribed_only:
        names &= subscribed
    # LSUB "" foo/% with only foo/bar/baz subscribed gives foo/bar, \Noselect: a "%"
    # must still show the way down to a subscribed name (RFC 3501 §6.3.9).
    unsubscribed_parents = set()
    if options.lsub and pattern.ends_with_percent:
        unsubscribed_parents = {p for p in _ancestors(names) if p not in subscribed}
    out = []
    for name in sorted(names | unsubscribed_parents, key=lambda n: (n != "INBOX", n)):
        info = existing.get(name)
        if options.special_use_only and (info is None or not info.special_use):
            continue
        wire = mutf7.encode(name)
        if not pattern.matches(wire):
            continue
        if name in unsubscribed_parents:
            attrs = ["\\Noselect"]
        else:
            attrs = ["\\Noselect"] if info is None else []
            attrs.append("\\HasChildren" if name in parents else "\\HasNoChildren")
            if not options.lsub and info is not None and info.special_use:
                attrs.append(info.special_use)
            if not options.lsub and name in subscribed and (options.subscribed_only or options.return_subscribed):
                attrs.append("\\Subscribed")
        out.append(f"* {verb} ({' '.join(attrs)}) \"/\" ".encode() + astring(wire) + b"\r\n")
    return b"".join(out)


def _ancestors(names) -> set[str]:
    """Every proper ancestor of these names (a/b/c: a and a/b)."""
    out: set[str] = set()
    for name in names:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            out.add("/".join(parts[:depth]))
    return out
