"""The access entries that change at run time (`mailctl access add`), shared by every
serving process: state/access.toml, one [[entry]] table per entry.

  kind       'allow' or 'deny' (a network, for the listeners named), 'sender' or
             'recipient' (an address pattern refused at RCPT TO)
  value      the network or the pattern, in canonical form (patterns.py)
  listeners  the listeners an allow/deny entry applies to ([] = every listener)
  expires    Unix time after which the entry is ignored (0 = never)
  reason, created, id

The file is rewritten whole (temp + rename) under a lock by the command; each serving
process rereads it when its stat changes. A file that does not parse (a hand edit gone
wrong) leaves the last good entries in force in a running server, is logged once, and
makes `mailctl access add/remove` refuse with the file and line.
"""
from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import tomli_w

from ..errors import ConfigError, InvalidInput, NotFound
from ..root import Root, atomic_write
from .. import tomlfile
from .patterns import network_of, network_text, parse_pattern, shown

log = logging.getLogger("mailctl")

NETWORK_KINDS = ("allow", "deny")
PATTERN_KINDS = ("sender", "recipient")
KINDS = NETWORK_KINDS + PATTERN_KINDS
MAX_ENTRIES = 100_000          # far beyond use; keeps a runaway script from filling the disk
FILE_NAME = "access.toml"


@dataclass
class Entry:
    kind: str
    value: str
    listeners: list[str] = field(default_factory=list)
    expires: float = 0.0
    reason: str = ""
    created: float = 0.0
    id: str = ""

    def active(self, now: float) -> bool:
        return not self.expires or self.expires > now

    def public(self, now: float) -> dict:
        row = asdict(self)
        row["remaining_s"] = int(self.expires - now) if self.expires else None
        return row


def check_listeners(names, known) -> list[str]:
    names = sorted({str(n).strip() for n in names})
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInput(f"unknown listener {shown(unknown[0])} (known: {', '.join(known)})")
    return names


def make_entry(kind: str, value: str, listeners=(), expires: float = 0.0, reason: str = "",
               now: float | None = None, known_listeners=()) -> Entry:
    """A checked entry: InvalidInput names what is wrong."""
    if kind not in KINDS:
        raise InvalidInput(f"{shown(kind)} is not a kind of entry (one of {', '.join(KINDS)})")
    if kind in NETWORK_KINDS:
        canonical = network_text(value)
        listeners = check_listeners(listeners, known_listeners)
    else:
        canonical = parse_pattern(value)
        if listeners:
            raise InvalidInput("--listener applies to allow and deny entries only")
        listeners = []
    reason = str(reason)
    if len(reason) > 200 or not reason.isprintable():
        raise InvalidInput("the reason must be at most 200 printable characters on one line")
    now = time.time() if now is None else now
    if expires and expires <= now:
        raise InvalidInput("the expiry is in the past")
    return Entry(kind, canonical, list(listeners), float(expires), reason, now, secrets.token_hex(4))


def _entry_from(data) -> Entry | None:
    """One [[entry]] table as read back; None when it is not a valid entry."""
    try:
        if not isinstance(data, dict):
            return None
        kind, value = data["kind"], data["value"]
        listeners = data.get("listeners", [])
        if kind in NETWORK_KINDS:
            value = network_text(value)
        elif kind in PATTERN_KINDS:
            value = parse_pattern(value)
        else:
            return None
        if not isinstance(listeners, list) or not all(isinstance(x, str) for x in listeners):
            return None
        return Entry(kind, value, listeners, float(data.get("expires", 0) or 0), str(data.get("reason", "")),
                     float(data.get("created", 0) or 0), str(data.get("id", "")))
    except (KeyError, TypeError, ValueError, InvalidInput):
        return None


class AccessEntries:
    """state/access.toml, read again only when it changed (one stat per question)."""

    def __init__(self, root: Root, clock: Callable[[], float] = time.time):
        self.root = root
        self.clock = clock
        self.path = root.state_dir / FILE_NAME
        self._key = None
        self._entries: list[Entry] = []
        self._bad_key = None
        self._index: dict | None = None      # the allow/deny entries by network, built on first use

    @property
    def display(self) -> str:
        return self.root.relative(self.path)

    def _read(self) -> list[Entry]:
        data, _ = tomlfile.read(self.path, self.display)
        items = data.get("entry", [])
        if not isinstance(items, list):
            raise ConfigError(f"{self.display}:1: entry: must be an array of tables ([[entry]])")
        return [e for e in map(_entry_from, items) if e is not None]

    def all(self) -> list[Entry]:
        """Every entry (expired ones too); the last good ones while the file does not parse."""
        try:
            st = os.stat(self.path)
            key = (st.st_mtime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            self._key, self._entries = None, []
            return self._entries
        if key != self._key and key != self._bad_key:
            try:
                self._entries, self._key, self._index = self._read(), key, None
            except (ConfigError, OSError) as e:
                self._bad_key = key
                log.error("access: %s; the last good entries stay in force", e)
        return self._entries

    def by_network(self) -> dict:
        """The allow and deny entries (expired ones too) as {(IP version, prefix length):
        {network address as an int: [entries]}}: a client is looked up once per prefix
        length in use, however many entries there are."""
        entries = self.all()
        if self._index is None:
            index: dict = {}
            for e in entries:
                if e.kind in NETWORK_KINDS:
                    net = network_of(e.value)
                    index.setdefault((net.version, net.prefixlen), {}).setdefault(
                        int(net.network_address), []).append(e)
            self._index = index
        return self._index

    def active(self, kinds=KINDS) -> list[Entry]:
        now = self.clock()
        return [e for e in self.all() if e.kind in kinds and e.active(now)]

    def listed(self, kinds=KINDS) -> list[Entry]:
        """The entries in force, for `mailctl access list`: a file that does not parse
        raises ConfigError (file and line) instead of showing what a server keeps."""
        if self.path.exists():
            self._read()
        return self.active(kinds)

    # -- changing (mailctl access) --
    def _rewrite(self, change: Callable[[list[Entry]], object]):
        with self.root.lock("access"):
            entries = self._read() if self.path.exists() else []     # a bad file: refused with file:line
            now = self.clock()
            entries = [e for e in entries if e.active(now)]           # expired ones are swept here
            result = change(entries)
            text = "# Run-time access entries: edit with 'mailctl access add|remove' (see its --help)\n\n"
            text += tomli_w.dumps({"entry": [asdict(e) for e in entries]}) if entries else ""
            self.root.state_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, text)
            return result

    def add(self, entry: Entry) -> Entry:
        """Add an entry; one of the same kind, value and listeners is replaced (its expiry renewed)."""
        def change(entries: list[Entry]):
            same = [e for e in entries if (e.kind, e.value, e.listeners) == (entry.kind, entry.value, entry.listeners)]
            for e in same:
                entries.remove(e)
            if len(entries) >= MAX_ENTRIES:
                raise InvalidInput(f"too many access entries (at most {MAX_ENTRIES})")
            entries.append(entry)
            return entry
        return self._rewrite(change)

    def remove(self, what: str, kind: str | None = None) -> list[Entry]:
        """Remove the entry with this id, or every entry of this value (of this kind)."""
        what = str(what).strip()

        def change(entries: list[Entry]):
            gone = [e for e in entries if e.id == what]
            if not gone:
                values = {what, what.lower()}
                for parse in (network_text, parse_pattern):
                    try:
                        values.add(str(parse(what)))
                    except InvalidInput:
                        pass
                gone = [e for e in entries if e.value in values and kind in (None, e.kind)]
            if not gone:
                raise NotFound(f"no access entry {shown(what)}; see 'mailctl access list'")
            for e in gone:
                entries.remove(e)
            return gone
        return self._rewrite(change)
