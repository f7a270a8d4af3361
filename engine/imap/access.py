"""Which mailbox an IMAP name means, and what this session may do in it: the one place
where commands are checked against ACL rights (RFC 4314 §4).

Three namespaces (RFC 2342, announced by NAMESPACE):
    ""                    the user's own folders (personal)
    "Shared/<address>/"   folders other users share with this one (in their Maildirs)
    "Public/"             the folders of the user's domain (ROOT/public/<domain>/)

A personal folder may be called "Shared" or "Public" (LIST shows it beside the namespace
level), but names below "Public/" and "Shared/<address>/" are always the namespaces'.
A name from the network becomes a folder only here: the owner part must name an existing
account (then its Maildir is found by Maildir.for_account, as at login), the folder part
passes foldernames' rule like any mailbox name, and folders are then opened through
nofollow as always. Rights come from engine.acl.aclfile.rights_for and nothing else.

What each command needs (checked by the command through require()):
    SELECT r (read-write with any of s w t i e)   EXAMINE, STATUS, FETCH, SEARCH r
    STORE  s for \\Seen, t for \\Deleted, w for other flags (FETCH sets \\Seen only with s)
    EXPUNGE, CLOSE's expunge e      MOVE t e on the source     APPEND, COPY/MOVE target i
    CREATE k on the parent (shared, public)    DELETE x    RENAME x, k on the new parent
    LIST/LSUB l (shared, public)   GETACL SETACL DELETEACL LISTRIGHTS a   MYRIGHTS any right
A session without l (nor r) on a mailbox is told it does not exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import foldernames
from ..acl import aclfile, places, rights as rightsmod
from .errors import no

PERSONAL, SHARED, PUBLIC = "personal", "shared", "public"
NO_PERMISSION = "[NOPERM] Permission denied"


@dataclass(frozen=True)
class Mailbox:
    wire: str                  # its name in this session's namespaces (Unicode)
    maildir: object            # the Maildir the folder lives in (the owner's, or the public tree)
    name: str                  # the folder's name in that Maildir
    kind: str                  # PERSONAL, SHARED or PUBLIC
    owner: str | None          # the owner's address; None for a public folder

    @property
    def path(self) -> Path:
        return self.maildir.folder_path(self.name)

    def holds(self, folder) -> bool:
        """Is this the folder (a selected one, say)?"""
        return folder.path == self.path


def shared_owner(text: str) -> str | None:
    """The owner part of a name in the shared namespace ("Shared/<address>/..."), None for
    any other name. Only an address (with "@") makes the name shared: a personal folder
    may itself be called "Shared" (and "Shared/Projects"), and no personal folder name
    holds a "." (Maildir++), as every address's domain does."""
    if not text.startswith(places.SHARED_PREFIX + "/"):
        return None
    owner = text[len(places.SHARED_PREFIX) + 1:].split("/", 1)[0]
    return owner if "@" in owner else None


def resolve(runtime, account, maildir, text: str) -> Mailbox:
    """The mailbox a decoded name means for account (whose Maildir is maildir).
    Raises NO [NONEXISTENT] for a namespace level or an unknown owner, and InvalidInput
    (answered NO) for a name that breaks the folder-name rule."""
    owner_text = shared_owner(text)
    if owner_text is not None:
        folder = text[len(places.SHARED_PREFIX) + 1 + len(owner_text) + 1:]
        owner = runtime.directory.account(owner_text)
        if owner is None or owner.address == account.address or not folder:
            raise no(f"[NONEXISTENT] Mailbox {text[:200]!r} does not exist")
        from ..maildir import Maildir
        md = Maildir.for_account(runtime.root, owner.domain, owner.local)
        name = foldernames.canonical(folder)
        return Mailbox(f"{places.SHARED_PREFIX}/{owner.address}/{name}", md, name, SHARED, owner.address)
    if text.startswith(places.PUBLIC_PREFIX + "/"):
        name = foldernames.canonical(text[len(places.PUBLIC_PREFIX) + 1:])
        if name == foldernames.INBOX:
            raise no(f"[NONEXISTENT] Mailbox {text[:200]!r} does not exist")
        md = places.public_tree(runtime.root, account.domain)
        return Mailbox(f"{places.PUBLIC_PREFIX}/{name}", md, name, PUBLIC, None)
    return personal(account, maildir, foldernames.canonical(text))


def personal(account, maildir, name: str) -> Mailbox:
    """The account's own folder of that (checked) name."""
    return Mailbox(name, maildir, name, PERSONAL, account.address)


def open_folder(box: Mailbox, user: str):
    """(blocking) The folder as user sees it: in a folder they do not own (shared,
    public), \\Seen is their own (maildir/privateseen.py, Dovecot's INDEXPVT)."""
    folder = box.maildir.folder(box.name)
    if box.kind == PERSONAL:
        return folder
    from ..maildir import PrivateSeenFolder
    return PrivateSeenFolder(folder, user)


def rights_of(box: Mailbox, user: str) -> frozenset:
    """What user may do in box now (its dovecot-acl as it is on disk: one lstat() while
    unchanged). Blocking only as far as a stat and a small read."""
    entries = aclfile.read(box.path)
    if entries is None:
        return rightsmod.ALL if box.kind == PERSONAL else rightsmod.NONE
    return aclfile.rights_for(entries, user, box.kind == PERSONAL)


def require(box: Mailbox, rights: frozenset, need: str) -> None:
    """NO unless rights hold every letter of need; a mailbox the user may neither see
    nor read does not exist for them."""
    if all(ch in rights for ch in need):
        return
    if "l" not in rights and "r" not in rights:
        raise no(f"[NONEXISTENT] Mailbox {box.wire[:200]!r} does not exist")
    missing = "".join(ch for ch in need if ch not in rights)
    raise no(f"{NO_PERMISSION} (you may not {rightsmod.MEANING[missing[0]]} in {box.wire[:200]!r})")
