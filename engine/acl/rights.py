"""RFC 4314 rights: the letters, a rights string from the network, and the text a
MYRIGHTS / GETACL reply shows (Dovecot's: letters in its order, then the obsolete "c"
when k or x is held and "d" when t or e is, so old RFC 2086 clients understand it)."""
from __future__ import annotations

from ..errors import InvalidInput

# Dovecot's order (imap-acl-plugin's letter map), used for every rights text we write.
LETTERS = "lrwstipekxa"
ALL = frozenset(LETTERS)
NONE: frozenset[str] = frozenset()
OBSOLETE = {"c": "kx", "d": "et"}       # RFC 4314 §2.1.1, as Dovecot maps them
MAX_RIGHTS_TEXT = 64                    # a rights string longer than this is junk
READ_WRITE = frozenset("swtie")         # any of these: SELECT opens read-write (as Dovecot)

# What each right lets a session do (RFC 4314 §4), for the NO texts.
MEANING = {"l": "see the mailbox", "r": "read it", "s": "change \\Seen", "w": "change flags",
           "t": "change \\Deleted", "i": "add messages", "p": "post to it", "e": "expunge",
           "k": "create mailboxes in it", "x": "delete it", "a": "administer its rights"}


def parse(text: str) -> frozenset[str]:
    """The rights a string names ("lrs", "c" = "kx", "d" = "et"). InvalidInput for any
    other character: an unknown right is never stored."""
    if not isinstance(text, str) or len(text) > MAX_RIGHTS_TEXT:
        raise InvalidInput("Invalid ACL rights: too long")
    out = set()
    for ch in text:
        if ch in ALL:
            out.add(ch)
        elif ch in OBSOLETE:
            out.update(OBSOLETE[ch])
        else:
            raise InvalidInput(f"Invalid ACL right: {ch!r}")
    return frozenset(out)


def letters(rights) -> str:
    """The stored form: held letters in Dovecot's order, no obsolete ones."""
    return "".join(ch for ch in LETTERS if ch in rights)


def imap_text(rights) -> str:
    """The form MYRIGHTS and GETACL show: letters, then c and d when implied."""
    text = letters(rights)
    if "k" in rights or "x" in rights:
        text += "c"
    if "t" in rights or "e" in rights:
        text += "d"
    return text


def flag_right(flag: str) -> str:
    """The right that setting or clearing this flag needs (RFC 4314 §4, STORE)."""
    lower = flag.lower()
    if lower == "\\seen":
        return "s"
    if lower == "\\deleted":
        return "t"
    return "w"


def storable_flags(flags, rights) -> list:
    """The flags of an APPEND or COPY the user may set; the rest are dropped (RFC 4314 §4:
    flags the user has no right to set are not stored)."""
    return [f for f in flags if flag_right(f) in rights]
