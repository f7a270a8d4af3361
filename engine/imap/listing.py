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
    """What the command asks for. LSUB lists subscribed names (RFC 3501 §6.3.9). LIST's
    selection options (RFC 5258 SUBSCRIBED and RECURSIVEMATCH, RFC 6154 SPECIAL-USE)
    narrow what is listed; RETURN (SUBSCRIBED) adds \\Subscribed, a LIST-EXTENDED
    attribute a plain LIST does not give, and RETURN (STATUS (...)) a STATUS reply per
    selectable mailbox (RFC 5819). Children and special-use attributes are always given
    (RFC 5258 §4, RFC 6154 §2 allow it), so RETURN (CHILDREN) and (SPECIAL-USE) change
    nothing. `extended`: any extended form was used, so names that do not exist are
    \\NonExistent (RFC 5258 §3) rather than the \\Noselect of RFC 3501."""
    lsub: bool = False
    extended: bool = False
    subscribed_only: bool = False
    special_use_only: bool = False
    recursive: bool = False
    return_subscribed: bool = False
    return_children: bool = False
    return_special_use: bool = False
    status_items: list[str] | None = None
    utf8: bool = False      # names (and patterns) in UTF-8, not modified UTF-7: IMAP4rev2's


@dataclass
class Entry:
    """One mailbox of a listing: its name, attributes, and whether it has a descendant
    that meets the selection though it may not (RFC 5258 CHILDINFO)."""
    name: str
    attrs: list[str]
    childinfo: bool = False

    @property
    def selectable(self) -> bool:
        return not any(a in ("\\Noselect", "\\NonExistent") for a in self.attrs)


def listing(verb: str, patterns, infos, subscribed, options: Options) -> bytes:
    """The untagged LIST/LSUB replies for the folders `infos` (maildir.list_folders)."""
    return render(verb, entries(patterns, infos, subscribed, options), options.utf8)


def wire_name(name: str, utf8: bool) -> str:
    """A folder's name as the client writes it, and its patterns match."""
    return name if utf8 else mutf7.encode(name)


def wire_astring(name: str, utf8: bool) -> bytes:
    """A folder's name in a response. UTF-8 goes in a quoted string, which IMAP4rev2
    allows (RFC 9051 §9 QUOTED-CHAR) and clients read more readily than a literal."""
    if not utf8 or name.isascii():
        return astring(wire_name(name, utf8))
    raw = name.encode("utf-8")
    if len(raw) > 1000 or any(c < 0x20 or c == 0x7F for c in raw):
        return astring(name)            # a literal
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def render(verb: str, found: list[Entry], utf8: bool = False) -> bytes:
    out = []
    for e in found:
        line = f"* {verb} ({' '.join(e.attrs)}) \"/\" ".encode() + wire_astring(e.name, utf8)
        if e.childinfo:
            line += b' ("CHILDINFO" ("SUBSCRIBED"))'
        out.append(line + b"\r\n")
    return b"".join(out)


def entries(patterns, infos, subscribed, options: Options) -> list[Entry]:
    """The mailboxes a LIST or LSUB lists, in order; patterns: one Pattern or several."""
    if isinstance(patterns, Pattern):
        patterns = [patterns]
    subscribed = set(subscribed)
    existing = {i.name: i for i in infos}
    parents = _ancestors(existing)
    if options.lsub:
        return _lsub_entries(patterns, existing, parents, subscribed, options.utf8)
    # The names that meet the selection: every one, or those subscribed (existing or not:
    # RFC 5258 §3), or those with a special use, or both.
    chosen = parents | set(existing)
    if options.subscribed_only:
        chosen = set(subscribed)
    if options.special_use_only:
        chosen = {n for n in chosen if n in existing and existing[n].special_use}
    # RECURSIVEMATCH: an ancestor of a chosen name is listed too, with CHILDINFO.
    leading = _ancestors(chosen) if options.recursive and options.subscribed_only else set()
    out = []
    for name in sorted(chosen | leading, key=lambda n: (n != "INBOX", n)):
        wire = wire_name(name, options.utf8)
        if not any(p.matches(wire) for p in patterns):
            continue
        info = existing.get(name)
        attrs = []
        # in the order Dovecot gives them (and RFC 5258's examples): scripts compare lines
        if options.return_subscribed and name in subscribed:
            attrs.append("\\Subscribed")
        if info is None:
            attrs.append("\\NonExistent" if options.extended else "\\Noselect")
        if info is not None or name in parents:
            attrs.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        if info is not None and info.special_use:
            attrs.append(info.special_use)
        out.append(Entry(name, attrs, childinfo=name in leading))
    return out


def _lsub_entries(patterns, existing, parents, subscribed, utf8: bool) -> list[Entry]:
    names = (parents | set(existing)) & subscribed
    # LSUB "" foo/% with only foo/bar/baz subscribed gives foo/bar, \Noselect: a "%"
    # must still show the way down to a subscribed name (RFC 3501 §6.3.9).
    unsubscribed_parents = set()
    if any(p.ends_with_percent for p in patterns):
        unsubscribed_parents = {p for p in _ancestors(names) if p not in subscribed}
    out = []
    for name in sorted(names | unsubscribed_parents, key=lambda n: (n != "INBOX", n)):
        wire = wire_name(name, utf8)
        if not any(p.matches(wire) for p in patterns):
            continue
        if name in unsubscribed_parents:
            attrs = ["\\Noselect"]
        else:
            attrs = ["\\Noselect"] if name not in existing else []
            attrs.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        out.append(Entry(name, attrs))
    return out


def _ancestors(names) -> set[str]:
    """Every proper ancestor of these names (a/b/c: a and a/b)."""
    out: set[str] = set()
    for name in names:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            out.add("/".join(parts[:depth]))
    return out
