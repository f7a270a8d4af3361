"""Where shared and public folders are, and what makes them visible.

Shared folders stay in their owner's Maildir (mail/<domain>/<local>/); another user reaches
them as `Shared/<owner address>/<folder>`. The owner's tree keeps `mailctl-shared`, the
names of its folders that have a dovecot-acl file (written whenever one is), so a LIST
looks at a few files per account, not at every folder of every account. A hand-made
dovecot-acl file still counts when the folder is named, but the folder is listed only
after `mailctl mailbox share` or a SETACL on it (as Dovecot's dovecot-acl-list).

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

SHARED_INDEX = "mailctl-shared"
SHARED_PREFIX = "Shared"
PUBLIC_PREFIX = "Public"
PUBLIC_DIR = "public"
MAX_INDEX = 64 * 1024


def public_tree(root: Root, domain: str):
    """The Maildir of a domain's public folders (it may not exist yet)."""
    from ..maildir import Maildir
    if not domain or domain in (".", "..") or "/" in domain or "\0" in domain:
        raise InvalidInput(f"{domain[:60]!r}: not a domain name")
    return Maildir(root.path / PUBLIC_DIR / domain.lower(), root.path)


def shared_names(maildir_path: str | os.PathLike) -> list[str]:
    """The folders the owner's index names (checked names only; none when no index)."""
    path = os.path.join(os.fspath(maildir_path), SHARED_INDEX)
    try:
        if os.lstat(path).st_size > MAX_INDEX:
            return []
        text = nofollow.read_text(path, errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(foldernames.canonical(line))
        except InvalidInput:
            continue
    return out


def note_shared(maildir_path: Path, name: str, shared: bool) -> None:
    """Add (or drop) a folder in the owner's index, after its dovecot-acl changed."""
    names = set(shared_names(maildir_path))
    if (name in names) == shared:
        return
    names = names | {name} if shared else names - {name}
    atomic_write(Path(maildir_path) / SHARED_INDEX, "".join(n + "\n" for n in sorted(names)), mode=0o600)
