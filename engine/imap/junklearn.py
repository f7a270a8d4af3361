"""Which IMAP changes teach the spam learners (engine/learning.py puts them up; the
'spam_learn' worker tells rspamd or spamd), in the user's own folders only:

- COPY or MOVE into the Junk folder from any other folder, and APPEND into it: spam;
- COPY or MOVE out of the Junk folder into any folder but Trash: ham (deleting spam is
  not saying it is good);
- STORE setting $Junk on a message: spam; setting $NotJunk on a message in Junk: ham
  (outside Junk, mail clients set $NotJunk on arriving mail by themselves).

The Junk folder is the account's domain's junk_folder, else spam.junk_folder: where the
spam checks file spam is where learning looks. Shared and public folders teach nothing:
one user's opinion of another's mail is not the owner's.
"""
from __future__ import annotations

from ..learning import active, enqueue
from ..spam_settings import junk_folder
from . import access

JUNK_KEYWORD, NOT_JUNK_KEYWORD = "$junk", "$notjunk"


def _junk(session) -> str | None:
    """The session's Junk folder when learning is on, else None."""
    rt = session.runtime
    if session.account is None or not active(rt.settings):
        return None
    return junk_folder(rt.settings, rt.directory, session.account.address)


def _own(box) -> bool:
    return box is not None and box.kind == access.PERSONAL


def copy_kind(session, source, dest) -> str | None:
    """What a COPY or MOVE from source to dest (access.Mailbox) teaches: spam, ham or None."""
    junk = _junk(session)
    if junk is None or not (_own(source) and _own(dest)):
        return None
    if dest.name == junk and source.name != junk:
        return "spam"
    if source.name == junk and dest.name != junk and "\\Trash" not in (dest.maildir.special_use(dest.name) or ""):
        return "ham"
    return None


def append_kind(session, dest) -> str | None:
    junk = _junk(session)
    return "spam" if junk is not None and _own(dest) and dest.name == junk else None


def store_kind(session, box, old: frozenset[str], new: frozenset[str]) -> str | None:
    """What one message's flag change teaches."""
    added = {f.lower() for f in new} - {f.lower() for f in old}
    if JUNK_KEYWORD not in added and NOT_JUNK_KEYWORD not in added:
        return None
    junk = _junk(session)
    if junk is None or not _own(box):
        return None
    if JUNK_KEYWORD in added:
        return "spam"
    return "ham" if box.name == junk else None


def put_up(session, kind: str | None, messages) -> None:
    """Put (path, size) pairs up for learning as kind (in the command's disk thread)."""
    if kind is None:
        return
    rt = session.runtime
    for path, size in messages:
        enqueue(rt.root, rt.settings, kind, path, size)
