"""BODYSTRUCTURE and BODY (RFC 3501 §7.4.2) of a message, encoded, kept per process.

Clients ask for a message's structure again and again (a message list's attachment icons,
each time a message is opened), and making it means reading and parsing the whole file.
Message files never change once delivered (DESIGN.md §4), so an answer kept by (folder,
base name, item) in a bounded cache (headercache.HeaderCache) never goes stale; a FETCH
that finds every structure it wants here reads no file at all.
"""
from __future__ import annotations

from .headercache import HeaderCache

NAMES = ("BODYSTRUCTURE", "BODY")
CACHE_BYTES = 16 * 1024 * 1024    # ~40,000 structures of a few hundred bytes
STRUCTURES = HeaderCache(CACHE_BYTES)


def is_structure(item) -> bool:
    """BODYSTRUCTURE, or BODY without a section."""
    return item.name in NAMES and not item.kind


def cached(folder, msg, names) -> dict[str, bytes]:
    """The encoded structures of names this process kept for msg (those it has)."""
    where = str(folder.path)
    found = {}
    for name in names:
        value = STRUCTURES.get((where, msg.base, name))
        if value is not None:
            found[name] = value
    return found


def remember(folder, msg, made: dict[str, bytes]) -> None:
    where = str(folder.path)
    for name, value in made.items():
        STRUCTURES.put((where, msg.base, name), value)
