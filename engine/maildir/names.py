"""Names in a Maildir++ tree: its files and modes, folder names, and message file names.

A message file is "<base>[:2,<flags>]" in new/ or cur/; the base name is given once,
"<secs>.M<usecs>P<pid>Q<counter>R<random>.<host>,S=<size>,W=<vsize>", and stays the
same across flag changes, so it names the message inside its folder. Folder names
follow the one rule of engine/foldernames.py.
"""
from __future__ import annotations

import itertools
import os
import re
import socket
import time
from pathlib import Path
from typing import Iterable

from .. import foldernames, nofollow, uniquenames

SEPARATOR = foldernames.SEPARATOR
INBOX = foldernames.INBOX
SPECIAL_USE = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
               "Archive": "\\Archive"}
DEFAULT_FOLDERS = ["Sent", "Drafts", "Trash", "Junk", "Archive"]

UIDLIST = "dovecot-uidlist"
KEYWORDS = "dovecot-keywords"
UIDVALIDITY = "dovecot-uidvalidity"
MAILDIRSIZE = "maildirsize"
SUBSCRIPTIONS = "subscriptions"
RECENT_CLAIMS = "mailctl-recent"   # ours alone (recent.py); Dovecot's files all start "dovecot"
MODSEQS = "mailctl-modseq"         # ours alone (modseq.py): CONDSTORE mod-sequences
DIR_MODE = 0o700
FILE_MODE = 0o600

canonical_name = foldernames.canonical


# -- message file names ------------------------------------------------------

_counter = itertools.count(1)


def escaped_hostname() -> str:
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072")


_HOST = escaped_hostname()


def unique_base(size: int, vsize: int) -> str:
    now = time.time()
    secs = int(now)
    usecs = int((now - secs) * 1_000_000)
    return (f"{secs}.M{usecs}P{uniquenames.pid()}Q{next(_counter)}R{uniquenames.random_hex(4)}.{_HOST}"
            f",S={size},W={vsize}")


def _field(base: str, marker: str) -> int | None:
    start = base.find(marker)
    if start < 0:
        return None
    end = base.find(",", start + 3)
    value = base[start + 3:] if end < 0 else base[start + 3:end]
    return int(value) if value.isdigit() else None


def sizes_from(base: str, keys: str) -> tuple[int | None, int | None]:
    """(size, vsize) from ,S=/,W= in the base name or S/W keys of the uidlist record."""
    if "," not in base:   # named by another tool (no sizes): the usual case at a first sync
        if not keys:
            return None, None
        size = vsize = None
    else:
        size, vsize = _field(base, ",S="), _field(base, ",W=")
    for key in keys.split():
        if key[0] == "S" and size is None and key[1:].isdigit():
            size = int(key[1:])
        elif key[0] == "W" and vsize is None and key[1:].isdigit():
            vsize = int(key[1:])
    return size, vsize


def delivery_order(bases: Iterable[str]) -> list[str]:
    """Base names "<secs>.M<usecs>..." in delivery order (seconds, then microseconds, then
    the name), for giving out UIDs. Two sorts, the first by the name itself, because one
    sort by a (secs, usecs, name) tuple costs three times as much at 100,000 names."""
    names = sorted(bases)
    if len(names) > 1000:
        # Names of ten digits of seconds and no "M<usecs>" after the dot (Postfix's
        # virtual(8) and others) are already in delivery order when sorted by name: one
        # regex scan instead of a Python function per name (a first SELECT of 100,000).
        # (A name with a line break in it only adds lines to pass.)
        if not _NOT_SECONDS_ONLY.search("\n".join(names)):
            return names
    return sorted(names, key=_delivery_time)


_NOT_SECONDS_ONLY = re.compile(r"^(?![0-9]{10}\.(?!M[0-9]))", re.MULTILINE)


def _delivery_time(base: str) -> int:
    secs, _, rest = base.partition(".")
    if not (secs.isascii() and secs.isdigit()):
        return 0
    usecs = rest[1:].partition("P")[0] if rest[:1] == "M" else ""
    return int(secs) * 1_000_000 + (int(usecs) if usecs.isascii() and usecs.isdigit() and len(usecs) <= 6 else 0)


# -- a folder's message files --------------------------------------------------

# Directory times come from a coarse clock (a few milliseconds a tick): a listing begun
# this long after the newest change it saw cannot have missed a change with the same time.
MTIME_SLACK = 0.05


def folder_stamp(path: Path) -> tuple[tuple, float]:
    """What stat() says of a folder's new/, cur/ and dovecot-uidlist, and the newest of
    their times. While the stamp stays the same, a listing begun MTIME_SLACK after that
    time is still the folder's (Folder.sync, and folder_cache's listings and snapshots)."""
    out = []
    for name in ("new", "cur", UIDLIST):
        try:
            st = os.lstat(path / name)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except FileNotFoundError:
            out.append(None)
    return tuple(out), max((s[0] for s in out if s), default=0) / 1e9


def scan(folder_path: Path) -> dict[str, tuple[str, str]]:
    """base -> (subdir, filename). new/ first: a file moving to cur/ meanwhile is still seen."""
    found: dict[str, tuple[str, str]] = {}
    for sub in ("new", "cur"):
        for name in nofollow.list_files(folder_path, sub):
            if name[0] != ".":
                found[name.partition(":")[0]] = (sub, name)
    return found


def locate(folder_path: Path, base: str) -> tuple[str, str] | None:
    """(subdir, filename) of the message with this base name, wherever its flags put it."""
    for sub in ("new", "cur"):
        for name in nofollow.list_files(folder_path, sub):
            if name.partition(":")[0] == base:
                return sub, name
    return None
