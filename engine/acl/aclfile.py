"""A folder's `dovecot-acl` file, in Dovecot's format so that Dovecot serving the same
tree (acl = vfile) honours the same rights:

    owner lrwstipekxa
    user=bob@example.test lr
    anyone l
    -user=eve@example.test r        (negative rights: taken away after the rest)

One entry per line: identifier, space, right letters (then optional ":named" rights,
which we keep no meaning for). "#" starts a comment. A line we cannot read (a hand edit)
is skipped and logged, never fatal: the rest of the file still counts.

Whose rights (Dovecot's vfile rules, checked against Dovecot in tests/test_imap_acl_dovecot.py):
entries are applied in the order anyone, authenticated, group, owner, user, group-override;
a matching entry *replaces* what less specific ones gave; negative entries are taken away
at the end. The owner of a personal folder without an `owner` entry gets every right at
the owner's place in that order (so anyone/authenticated entries never narrow the owner,
a user= entry naming the owner does). Anyone else matched by no entry has no right, and
public folders have no owner.

The file is read through O_NOFOLLOW (a link is treated as no file: owner only) and cached
per process while its lstat() stamp holds; it is written by temp + rename under Dovecot's
dotlock `dovecot-acl.lock`.
"""
from __future__ import annotations

import logging
import os
import stat
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from .. import nofollow
from ..errors import InvalidInput
from ..locks import DotLock
from ..root import atomic_write
from . import rights as rightsmod

ACL_FILE = "dovecot-acl"
MAX_FILE = 256 * 1024            # a larger file is someone's mistake: read as empty
MAX_NAME = 320                   # an address: 64 + @ + 255
# Applied in this order; a later matching entry replaces an earlier one's rights.
PRIORITY = {"anyone": 0, "authenticated": 1, "group": 2, "owner": 3, "user": 4, "group-override": 5}
NAMED = ("user", "group", "group-override")

log = logging.getLogger("mailctl.acl")


@dataclass(frozen=True)
class Entry:
    kind: str                     # a key of PRIORITY
    name: str = ""                # the user or group of user= / group= / group-override=
    rights: frozenset = rightsmod.NONE
    negative: bool = False

    def identifier(self) -> str:
        """As the file writes it: user=bob@example.test, anyone..."""
        base = f"{self.kind}={self.name}" if self.kind in NAMED else self.kind
        return ("-" if self.negative else "") + base

    def wire(self) -> str:
        """As GETACL shows it (Dovecot's): the address, anyone, $group, !$group..."""
        base = {"user": self.name, "group": "$" + self.name,
                "group-override": "!$" + self.name}.get(self.kind, self.kind)
        return ("-" if self.negative else "") + base

    def line(self) -> str:
        return f"{self.identifier()} {rightsmod.letters(self.rights)}"

    def same_identifier(self, other: "Entry") -> bool:
        return (self.kind, self.name.lower(), self.negative) == (other.kind, other.name.lower(), other.negative)


def check_name(name: str) -> str:
    """A user or group name fit to stand in a line of the file: no space, no control
    character, no "=" (InvalidInput)."""
    if not name or len(name) > MAX_NAME:
        raise InvalidInput("Invalid ACL identifier: empty or too long")
    for ch in name:
        if ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch in "=:#":
            raise InvalidInput(f"Invalid ACL identifier: character {ch!r} not allowed")
    return name


def parse_identifier(text: str) -> Entry:
    """An identifier as the file writes it ("user=bob@x", "anyone", "-owner"...)."""
    negative = text.startswith("-")
    if negative:
        text = text[1:]
    if text in ("anyone", "anonymous"):
        return Entry("anyone", negative=negative)
    if text in ("authenticated", "owner"):
        return Entry(text, negative=negative)
    kind, eq, name = text.partition("=")
    if eq and kind in NAMED:
        return Entry(kind, check_name(name).lower() if kind == "user" else check_name(name), negative=negative)
    raise InvalidInput(f"Invalid ACL identifier {text[:40]!r}")


def parse(text: str) -> tuple[list[Entry], list[str]]:
    """The entries of a file's text, and a problem text for each line skipped."""
    entries, problems = [], []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        ident, _, rest = line.partition(" ")
        letters = rest.strip().split(":", 1)[0].strip()
        try:
            entry = parse_identifier(ident)
            if " " in letters or not letters:
                raise InvalidInput("Invalid ACL rights: none given, or spaces inside the letters")
            entries.append(replace(entry, rights=rightsmod.parse(letters)))
        except InvalidInput as e:
            problems.append(f"line {number}: {e}")
    return entries, problems


def format_entries(entries: list[Entry]) -> str:
    return "".join(e.line() + "\n" for e in entries)


def rights_for(entries, user: str, is_owner: bool) -> frozenset:
    """What `user` (an address) may do on a folder with these entries; is_owner: the
    folder is in user's own tree. The one rule every check in the server goes through."""
    user = user.lower()
    current = None
    negative: set[str] = set()
    if is_owner and not any(e.kind == "owner" for e in entries):
        entries = [*entries, Entry("owner", rights=rightsmod.ALL)]     # the owner's default, in its place
    for e in sorted(entries, key=lambda e: PRIORITY[e.kind]):
        if e.kind in ("group", "group-override"):
            continue                      # no groups here: they match nobody
        if e.kind == "owner" and not is_owner:
            continue
        if e.kind == "user" and e.name != user:
            continue
        if e.negative:
            negative |= e.rights
        else:
            current = e.rights
    return frozenset((current or rightsmod.NONE) - negative)


# -- the file on disk -------------------------------------------------------------------
_cache: dict[str, tuple[tuple, tuple[Entry, ...]]] = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 4096


def _stamp(st: os.stat_result) -> tuple:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read(folder_path: str | os.PathLike) -> tuple[Entry, ...] | None:
    """The entries of a folder's file, None when it has none (or it is not a plain file:
    a link is never followed). One lstat() while the file is unchanged."""
    path = os.path.join(os.fspath(folder_path), ACL_FILE)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode):
        if stat.S_ISLNK(st.st_mode):
            nofollow.report(path)
        return None
    stamp = _stamp(st)
    with _cache_lock:
        kept = _cache.get(path)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    if st.st_size > MAX_FILE:
        log.warning("%s: larger than %d bytes; read as empty", path, MAX_FILE)
        entries: tuple[Entry, ...] = ()
    else:
        try:
            text = nofollow.read_text(path, errors="replace")
        except FileNotFoundError:
            return None
        found, problems = parse(text)
        for p in problems:
            log.warning("%s: %s (line skipped)", path, p)
        entries = tuple(found)
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[path] = (stamp, entries)
    return entries


def write(folder_path: str | os.PathLike, entries: list[Entry]) -> None:
    """Replace the folder's file in one atomic step (an empty list removes it)."""
    path = Path(folder_path) / ACL_FILE
    if entries:
        atomic_write(path, format_entries(entries), mode=0o600)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def update(folder_path: str | os.PathLike, change) -> list[Entry]:
    """Read-modify-write under Dovecot's dotlock: change(entries) -> new entries."""
    folder_path = Path(folder_path)
    with DotLock(folder_path / (ACL_FILE + ".lock")):
        entries = list(read(folder_path) or ())
        new = change(entries)
        if new != entries:
            write(folder_path, new)
    return new


def set_entry(entries: list[Entry], entry: Entry) -> list[Entry]:
    """entries with entry's identifier given entry's rights, in the place it had (at the
    end when new); removed when entry has none."""
    out, placed = [], False
    for e in entries:
        if e.same_identifier(entry):
            if entry.rights and not placed:
                out.append(entry)
            placed = True
        else:
            out.append(e)
    if not placed and entry.rights:
        out.append(entry)
    return out
