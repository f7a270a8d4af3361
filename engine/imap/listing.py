"""LIST and LSUB (RFC 3501 §6.3.8-9): matching mailbox patterns and making the replies.

A pattern's `*` matches anything and `%` anything but the hierarchy delimiter "/". A
backtracking regex costs exponential time in the number of wildcards (a 13-byte
pattern took 37 s), so patterns are matched as a small automaton run over the name
with bit sets: time linear in the name's length times the pattern's length divided by
the machine word, whatever the pattern holds. The whole listing is made in one call,
meant for a worker thread.
"""
from __future__ import annotations

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


def listing(verb: str, pattern: Pattern, infos, subscribed: set, lsub: bool) -> bytes:
    """The untagged LIST/LSUB replies for the folders `infos` (maildir.list_folders)."""
    existing = {i.name: i for i in infos}
    parents: set[str] = set()
    for name in existing:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parents.add("/".join(parts[:depth]))
    out = []
    for name in sorted(parents | set(existing), key=lambda n: (n != "INBOX", n)):
        if lsub and name not in subscribed:
            continue
        wire = mutf7.encode(name)
        if not pattern.matches(wire):
            continue
        info = existing.get(name)
        attrs = []
        if info is None:
            attrs.append("\\Noselect")
        attrs.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        if info is not None and info.special_use:
            attrs.append(info.special_use)
        if not lsub and name in subscribed:
            attrs.append("\\Subscribed")
        if lsub and verb == "LSUB":
            attrs = [a for a in attrs if a in ("\\Noselect",)] + [a for a in attrs if a.startswith("\\Has")]
        elif lsub:
            attrs.append("\\Subscribed")
        out.append(f"* {verb} ({' '.join(attrs)}) \"/\" ".encode() + astring(wire) + b"\r\n")
    return b"".join(out)
