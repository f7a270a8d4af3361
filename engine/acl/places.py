"""Where shared and public folders are, and what makes them visible.

Shared folders stay in their owner's Maildir (mail/<domain>/<local>/); another user reaches
them as `Shared/<owner address>/<folder>`. ROOT/state/shared-folders lists every folder
that has rights for others ("<owner>\t<folder>" lines, rewritten whole under a lock at
each SETACL / `mailctl mailbox share`), so a LIST reads one small file (kept per process
while its stamp holds) instead of looking into every account. A dovecot-acl file made by
hand still counts when the folder is named, but the folder is listed only after a SETACL
or `mailctl mailbox share` on it (as with Dovecot's dovecot-acl-list).

Public folders belong to a domain: ROOT/public/<domain>/ is a Maildir++ tree without an
INBOX of its own (`.Team/`, `.Team.Minutes/`...), seen by that domain's users as
`Public/<folder>` where its dovecot-acl grants them rights; nobody owns them.
"""
from __future__ import annotations

import os
from pathlib import Path

from .. import foldernames, nofollow
from ..errors import InvalidInput
from ..root import Root, atomic_write

SHARED_INDEX = "shared-folders"
SHARED_PREFIX = "Shared"
PUBLIC_PREFIX = "Public"
PUBLIC_DIR = "public"
MAX_INDEX = 4 * 1024 * 1024


def public_tree(root: Root, domain: str):
    """The Maildir of a domain's public folders (it may not exist yet)."""
    from ..maildir import Maildir
    if not domain or domain in (".", "..") or "/" in domain or "\0" in domain:
        raise InvalidInput(f"{domain[:60]!r}: not a domain name")
    return Maildir(root.path / PUBLIC_DIR / domain.lower(), root.path)


def _index_path(root: Root) -> Path:
    return root.state_dir / SHARED_INDEX


_kept: dict[str, tuple[tuple, list[tuple[str, str]]]] = {}


def shared_folders(root: Root) -> list[tuple[str, str]]:
    """(owner address, folder) of every folder shared with someone, as the index says
    (checked names only; a line that is not one is skipped)."""
    path = _index_path(root)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return []
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    kept = _kept.get(str(path))
    if kept is not None and kept[0] == stamp:
        return kept[1]
    text = "" if st.st_size > MAX_INDEX else nofollow.read_text(path, errors="replace")
    out = []
    for line in text.splitlines():
        owner, tab, name = line.partition("\t")
        try:
            if tab and "@" in owner:
                out.append((owner, foldernames.canonical(name)))
        except InvalidInput:
            continue
    _kept[str(path)] = (stamp, out)
    return out


def note_shared(root: Root, owner: str, name: str, shared: bool) -> None:
    """Add (or drop) a folder in the index, after its dovecot-acl changed."""
    with root.lock(SHARED_INDEX):
        entries = set(shared_folders(root))
        if ((owner, name) in entries) == shared:
            return
        entries = entries | {(owner, name)} if shared else entries - {(owner, name)}
        root.state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(_index_path(root), "".join(f"{o}\t{n}\n" for o, n in sorted(entries)), mode=0o600)
