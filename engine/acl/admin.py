"""The administrator's side of shared and public folders, for `mailctl mailbox share`,
`mailctl mailbox acl` and `mailctl public ...`: the same files and the same rules as
SETACL (edit.py), plus what only the administrator may grant: rights to `anyone` (every
user of the server) and `authenticated`, and folders of a domain's public tree."""
from __future__ import annotations

from contextlib import suppress

from ..errors import AlreadyExists, InvalidInput, NotFound
from . import aclfile, edit, places, rights as rightsmod
from .aclfile import Entry

NONE_WORDS = ("none", "")


def parse_who(directory, text: str) -> Entry:
    """`anyone`, `authenticated`, or the address of an existing account."""
    if text in ("anyone", "authenticated"):
        return Entry(text)
    account = directory.account(text)
    if account is None:
        raise InvalidInput(f"{text[:80]!r}: not an account here; give an address, 'anyone' or 'authenticated'")
    return Entry("user", account.address)


def parse_change(text: str) -> tuple[str, frozenset]:
    """RIGHTS as given: "lr" (exactly these), "+w" / "-w" (add, take away), "none"."""
    if text.lower() in NONE_WORDS:
        return "delete", rightsmod.NONE
    mode = {"+": "add", "-": "remove"}.get(text[:1], "replace")
    return mode, rightsmod.parse(text[1:] if mode != "replace" else text)


def rows(folder_path) -> list[dict]:
    return [{"who": e.identifier(), "rights": rightsmod.letters(e.rights)}
            for e in aclfile.read(folder_path) or ()]


def share(root, md, owner: str, folder: str, who: Entry, mode: str, letters: frozenset) -> list[dict]:
    """Give `who` rights on the owner's folder (an existing one)."""
    if who.kind == "user" and who.name == owner:
        raise InvalidInput(f"{owner} owns {folder}: an owner's own rights are not set here")
    f = md.folder(folder)
    entries = edit.change(f.path, Entry(who.kind, who.name, letters), mode)
    edit.note(root, owner, f.name, entries)
    return rows(f.path)


def public_folder(root, directory, domain: str, folder: str, create: bool):
    """A folder of a local domain's public tree (made, with the tree, when create)."""
    d = directory.domain(domain.lower())
    if d is None:
        raise NotFound(f"domain {domain} is not a local domain; see 'mailctl domain list'")
    tree = places.public_tree(root, d.name)
    if create:
        if not tree.exists():
            tree.create(folders=[])
        with suppress(AlreadyExists):
            tree.create_folder(folder)
    try:
        return tree.folder(folder)
    except NotFound:
        raise NotFound(f"public folder {folder} of {d.name} does not exist; "
                       f"make it with 'mailctl public add {d.name} {folder}'") from None


def grant_public(folder, who: Entry, mode: str, letters: frozenset) -> list[dict]:
    edit.change(folder.path, Entry(who.kind, who.name, letters), mode)
    return rows(folder.path)


def public_listing(root, directory, domain: str) -> list[dict]:
    d = directory.domain(domain.lower())
    if d is None:
        raise NotFound(f"domain {domain} is not a local domain; see 'mailctl domain list'")
    tree = places.public_tree(root, d.name)
    if not tree.exists():
        return []
    out = []
    for info in tree.list_folders():
        if info.name != "INBOX":
            out.append({"folder": info.name, "rights": " ".join(
                f"{r['who']}={r['rights']}" for r in rows(tree.folder_path(info.name)))})
    return out
