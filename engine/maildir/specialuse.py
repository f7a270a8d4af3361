"""The special uses of an account's folders (RFC 6154): the defaults by name (Sent,
Drafts, ...: names.SPECIAL_USE) and the ones a client gave with CREATE ... (USE (...))
(RFC 6154 §3, CREATE-SPECIAL-USE), kept in `mailctl-specialuse` at the top of the tree.

The file is ours: Dovecot keeps the uses CREATE gives in its mailbox attribute dictionary
(`mail_attribute_dict`, off unless configured, keyed by each folder's GUID), and otherwise
only in its own configuration (`mailbox X { special_use = ... }`), so there is no per-user
file it reads that we could write. Ours is one name a line, "V\t1" first:

    V\t1
    <folder, components in modified UTF-7 joined by TAB>\t<use> [<use>...]

written whole by atomic rename under the tree's directory lock, so a LIST in another
serving process sees it at once (its listing is stamped by the file, account.tree_stamp).
A folder renamed or deleted takes its entry with it.
"""
from __future__ import annotations

from pathlib import Path

from .. import mutf7, nofollow
from ..errors import InvalidInput
from ..locks import dir_lock
from ..root import atomic_write
from .names import FILE_MODE, SEPARATOR, SPECIAL_USE, canonical_name

SPECIAL_USE_FILE = "mailctl-specialuse"
# The uses a folder may be given. \All and \Flagged name virtual folders we do not have.
ASSIGNABLE = ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash", "\\Important")
_HEADER = "V\t1"


def check_uses(uses: list[str]) -> list[str]:
    """The uses in their canonical spelling, one each; InvalidInput names one not allowed."""
    out: list[str] = []
    for use in uses:
        found = next((a for a in ASSIGNABLE if a.lower() == use.lower()), None)
        if found is None:
            raise InvalidInput(f"special use {use[:30]} cannot be given to a folder")
        if found not in out:
            out.append(found)
    return out


def read(top: Path) -> dict[str, str]:
    """Folder name -> its given uses ("\\Archive \\Junk"), as stored."""
    try:
        text = nofollow.read_text(Path(top) / SPECIAL_USE_FILE, "replace")
    except FileNotFoundError:
        return {}
    lines = text.split("\n")
    if not lines or lines[0] != _HEADER:
        return {}
    out: dict[str, str] = {}
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        try:
            name = canonical_name(SEPARATOR.join(mutf7.decode(c) for c in parts[:-1]))
            uses = check_uses(parts[-1].split())
        except InvalidInput:
            continue                      # a line some other version wrote: not ours to judge
        if uses:
            out[name] = " ".join(uses)
    return out


def uses_of(name: str, given: dict[str, str]) -> str | None:
    """A folder's special-use attributes: the ones given to it, else its default by name."""
    return given.get(name) or SPECIAL_USE.get(name)


def update(top: Path, set_: tuple[str, list[str]] | None = None, remove: str | None = None,
           rename: tuple[str, str] | None = None) -> None:
    """Give a folder its uses, forget a folder's (and its children's), or move them with
    a rename; one locked read-modify-write of the file."""
    top = Path(top)
    with dir_lock(top):
        before = read(top)
        entries = dict(before)
        if remove is not None:
            entries = {n: u for n, u in entries.items() if n != remove and not n.startswith(remove + SEPARATOR)}
        if rename is not None:
            old, new = rename
            entries = {(new + n[len(old):] if n == old or n.startswith(old + SEPARATOR) else n): u
                       for n, u in entries.items()}
        if set_ is not None:
            name, uses = set_
            if uses:
                entries[name] = " ".join(check_uses(uses))
            else:
                entries.pop(name, None)
        if entries == before:
            return
        lines = [_HEADER] + ["\t".join(mutf7.encode(c) for c in n.split(SEPARATOR)) + "\t" + u
                             for n, u in sorted(entries.items())]
        atomic_write(top / SPECIAL_USE_FILE, "\n".join(lines) + "\n", mode=FILE_MODE)
