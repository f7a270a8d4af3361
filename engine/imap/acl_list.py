"""What LIST shows of other users' shared folders and the domain's public ones, and
CREATE's part that copies the parent's rights to a new folder (as Dovecot's ACL
inheritance does). Blocking: run in a worker thread."""
from __future__ import annotations

from .. import nofollow
from ..acl import aclfile, places
from ..errors import InvalidInput
from ..maildir import Maildir
from . import access, listing

WILDCARDS = "*%"


def may_match(pattern: str) -> bool:
    """Can this LIST pattern match a name under Shared/ or Public/? (Most do not: no trip.)"""
    cut = min((i for i in (pattern.find(w) for w in WILDCARDS) if i >= 0), default=len(pattern))
    head = pattern[:cut]
    for prefix in (places.SHARED_PREFIX + "/", places.PUBLIC_PREFIX + "/"):
        if prefix.startswith(head) or head.startswith(prefix) or (cut == len(pattern) and head == prefix[:-1]):
            return True
    return False


def visible(runtime, account) -> list[str]:
    """Names (in this session's namespaces) of the folders of others it has l on."""
    me = account.address
    names = []
    for owner_address, name in places.shared_folders(runtime.root):
        owner = runtime.directory.account(owner_address)
        if owner is None or owner.address == me:
            continue
        try:
            md = Maildir.for_account(runtime.root, owner.domain, owner.local)
        except InvalidInput:    # an account name unfit for a path: it has no folders to share
            continue
        box = access.Mailbox(f"{places.SHARED_PREFIX}/{owner.address}/{name}", md, name,
                             access.SHARED, owner.address)
        if "l" in access.rights_of(box, me) and nofollow.is_folder(md.top, box.path):
            names.append(box.wire)
    md = places.public_tree(runtime.root, account.domain)
    if nofollow.is_folder(md.top, md.path):
        for info in md.list_folders():
            if info.name == "INBOX":
                continue
            box = access.Mailbox(f"{places.PUBLIC_PREFIX}/{info.name}", md, info.name, access.PUBLIC, None)
            if "l" in access.rights_of(box, me):
                names.append(box.wire)
    return names


def others(runtime, account, maildir, verb: str, patterns, utf8: bool = False) -> bytes:
    """The LIST lines of the shared and public folders any of the patterns matches, with their
    namespace levels as \\Noselect parents; a level that is also a personal folder
    ("Shared", "Public") was listed with the personal ones, and is not listed again."""
    names = set(visible(runtime, account))
    parents = set()
    for n in names:
        parts = n.split("/")
        parents.update("/".join(parts[:i]) for i in range(1, len(parts)))
    personal = {i.name for i in (maildir.cached_listing() or maildir.listing()).folders}
    out = []
    for name in sorted(names | parents):
        wire = listing.wire_name(name, utf8)
        if name in personal or not any(p.matches(wire) for p in patterns):
            continue
        attrs = ["\\Noselect"] if name not in names else []
        attrs.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        out.append(f"* {verb} ({' '.join(attrs)}) \"/\" ".encode() + listing.wire_astring(name, utf8) + b"\r\n")
    return b"".join(out)


def create_folder(root, box: access.Mailbox, parent: access.Mailbox | None, uses=None) -> None:
    """CREATE box; the new folder gets its parent's dovecot-acl, so who could work in the
    parent can in the child (and the owner's index lists it when shared)."""
    folder = box.maildir.create_folder(box.name, uses)
    entries = aclfile.read(parent.path) if parent is not None else None
    if entries:
        aclfile.update(folder.path, lambda _: list(entries))
        if box.kind != access.PUBLIC:
            places.note_shared(root, box.owner, folder.name, True)
