"""Changing a folder's rights, for SETACL / DELETEACL and `mailctl mailbox share` /
`mailctl public add`: one read-modify-write of its dovecot-acl under the dotlock, and the
owner's index of shared folders kept in step (places.py)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from . import aclfile, places, rights as rightsmod
from .aclfile import Entry

MODES = ("replace", "add", "remove", "delete")


def apply(entries: list[Entry], entry: Entry, mode: str) -> list[Entry]:
    """entries after giving entry's identifier entry's rights (replace), adding them,
    taking them away, or removing the identifier (delete)."""
    current = next((e for e in entries if e.same_identifier(entry)), None)
    have = current.rights if current else rightsmod.NONE
    new = {"replace": entry.rights, "add": have | entry.rights,
           "remove": have - entry.rights, "delete": rightsmod.NONE}[mode]
    return aclfile.set_entry(entries, replace(entry, rights=frozenset(new)))


def change(folder_path: Path, entry: Entry, mode: str) -> list[Entry]:
    """Change one identifier's rights on a folder; the new entries."""
    return aclfile.update(folder_path, lambda entries: apply(entries, entry, mode))


def note(root, owner: str, name: str, entries: list[Entry]) -> None:
    """Keep the index of shared folders (places.py) in step with a folder's new entries."""
    places.note_shared(root, owner, name, any(e.kind != "owner" and e.rights and not e.negative
                                              for e in entries))
