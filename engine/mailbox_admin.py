"""Administrative work on one account's mailbox, for `mailctl mailbox ...` and the
server's housekeeping: folder listing with counts, expunge (with age), resync."""
from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import NotFound
from .maildir import Maildir


@dataclass
class FolderSummary:
    name: str
    messages: int
    unseen: int
    size: int
    special_use: str | None
    subscribed: bool

    def public(self) -> dict:
        return {"folder": self.name, "messages": self.messages, "unseen": self.unseen,
                "size": self.size, "special_use": self.special_use, "subscribed": self.subscribed}


def open_mailbox(root, directory, address: str) -> Maildir:
    account = directory.account(address)
    if account is None:
        raise NotFound(f"account {address} does not exist; see 'mailctl account list'")
    md = Maildir.for_account(root, account.domain, account.local)
    if not md.exists():
        raise NotFound(f"{address}: the mailbox directory {md.path} is missing; "
                       f"run 'mailctl mailbox resync {address}' after restoring it")
    return md


def summary(md: Maildir) -> list[FolderSummary]:
    out = []
    for info in md.list_folders():
        st = md.folder(info.name).status()
        out.append(FolderSummary(info.name, st["messages"], st["unseen"], st["size"],
                                 info.special_use, info.subscribed))
    return out


def expunge(md: Maildir, folder: str | None = None, older_than_days: float | None = None,
            deleted_only: bool = True, clock=time.time) -> int:
    """Remove messages flagged \\Deleted (or all, when deleted_only is False) from one
    folder or all of them, optionally only those received more than N days ago.
    Returns the number removed."""
    names = [folder] if folder else [i.name for i in md.list_folders()]
    cutoff = clock() - older_than_days * 86400 if older_than_days is not None else None
    removed = 0
    for name in names:
        f = md.folder(name)
        doomed = [m for m in f.sync()
                  if (not deleted_only or "\\Deleted" in m.flags)
                  and (cutoff is None or m.mtime < cutoff)]
        if doomed:
            f.expunge(doomed)
            removed += len(doomed)
    return removed


def autoexpunge(md: Maildir, days: int, clock=time.time) -> int:
    """settings.mailbox.autoexpunge_days: \\Deleted messages older than `days` go."""
    if not days:
        return 0
    return expunge(md, None, days, True, clock)
