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


def change(folder_path: Path, entry: Entry, mode: str, owned: bool) -> list[Entry]:
    """Change one identifier's rights on a folder. owned: the folder has an owner (not
    public). An anyone / authenticated entry also matches the owner and would replace
    the owner's default of every right (Dovecot's rule), so such a folder gets an
    explicit `owner` line with every right first, unless it has one."""
    def changed(entries: list[Entry]) -> list[Entry]:
        out = apply(entries, entry, mode)
        if owned and entry.kind in ("anyone", "authenticated") and out != entries \
                and not any(e.kind == "owner" and not e.negative for e in out):
            out.insert(0, Entry("owner", rights=rightsmod.ALL))
        return out
    return aclfile.update(folder_path, changed)


def note(maildir_path: Path, name: str, entries: list[Entry]) -> None:
    """Keep the owner's index of shared folders in step with a folder's new entries."""
    places.note_shared(maildir_path, name, any(e.kind != "owner" and e.rights and not e.negative
                                               for e in entries))
