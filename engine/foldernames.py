"""The one rule for folder names, used by the store, IMAP, the CLI, importers, the
backup and `mailctl config check` (issue 20).

An IMAP name "A/B" is stored as the directory ".A.B" (Maildir++: components joined by
".", each in modified UTF-7). A component is refused when it is empty, "." or "..",
holds a "." (the on-disk separator), NUL or a control character, or when the stored
name would not fit in one directory entry. Names given for a *new* folder (IMAP CREATE
and RENAME, `mailctl mailbox`, imports) must also have no backslash: it is the escape
character of IMAP quoted strings and of many shells and tools, and some copy tools
treat it as a path separator. A folder some older version or another tool made with one
stays usable (it can be selected, renamed and deleted), is backed up, and is reported.
"""
from __future__ import annotations

import os

from . import mutf7
from .errors import InvalidInput

SEPARATOR = "/"
INBOX = "INBOX"
MAX_DIRNAME = 255                   # NAME_MAX: ".A.B" must fit in one directory entry
NEW_NAME_REFUSED = "\\"             # allowed on disk, refused in the names of new folders


def _check_component(comp: str, name: str, new: bool) -> None:
    if comp == "":
        raise InvalidInput(f"folder name {name!r}: empty component (leading, trailing or double '/')")
    if comp in (".", ".."):
        raise InvalidInput(f"folder name {name!r}: '{comp}' is not a folder name")
    if "." in comp:
        raise InvalidInput(f"folder name {name!r}: dots cannot be stored in Maildir++ folder "
                           f"names (the on-disk separator); use another character")
    if "\0" in comp:
        raise InvalidInput(f"folder name {name!r}: NUL is not allowed")
    for ch in comp:
        if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            raise InvalidInput(f"folder name {name!r}: control character {ch!r} is not allowed")
    if new and any(ch in comp for ch in NEW_NAME_REFUSED):
        raise InvalidInput(f"folder name {name!r}: a backslash is not allowed in folder names; "
                           f"use another character")


def split(name: str, new: bool = False) -> list[str]:
    """The checked components of an IMAP folder name; ["INBOX"] for the inbox.
    new: the name of a folder about to be made (the stricter rule)."""
    if not isinstance(name, str) or name == "":
        raise InvalidInput("folder name is empty; give a name such as 'Archive' or 'A/B'")
    comps = name.split(SEPARATOR)
    if comps[0].upper() == INBOX:
        comps[0] = INBOX
    for comp in comps:
        _check_component(comp, name, new)
    if len(dirname(comps).encode()) > MAX_DIRNAME:
        raise InvalidInput(f"folder name {name[:40]!r}...: too long (the stored name must fit "
                           f"in {MAX_DIRNAME} bytes)")
    return comps


def dirname(comps: list[str]) -> str:
    return "." + ".".join(mutf7.encode(c) for c in comps)


def name_from_dirname(dirname_: str) -> str | None:
    """The IMAP name of an on-disk folder directory, or None if it is not a canonical one."""
    if not dirname_.startswith(".") or dirname_ in (".", ".."):
        return None
    try:
        name = SEPARATOR.join(mutf7.decode(c) for c in dirname_[1:].split("."))
        comps = split(name)
    except InvalidInput:
        return None
    if comps == [INBOX] or dirname(comps) != dirname_:
        return None
    return name


def canonical(name: str) -> str:
    """A folder name checked and with INBOX spelled in capitals."""
    return SEPARATOR.join(split(name))


def dirname_problem(dirname_: str) -> str | None:
    """Why an on-disk folder directory breaks the rule for new names (None: it keeps it),
    for reports: such a folder is still served and backed up."""
    name = name_from_dirname(dirname_)
    if name is None:
        return "not a valid folder name (not shown to IMAP clients)"
    try:
        split(name, new=True)
    except InvalidInput as e:
        return str(e).split(": ", 1)[-1]
    return None


def odd_folders(mail_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """(path, problem) of every folder directory under mail/<domain>/<account>/ whose
    name breaks the rule, for `mailctl config check`. No link is followed."""
    found = []
    for domain in _dirs(mail_dir):
        for account in _dirs(domain):
            for folder in _dirs(account):
                if folder.name.startswith(".") and (problem := dirname_problem(folder.name)):
                    found.append((folder.path, problem))
    return sorted(found)


def _dirs(path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return [e for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
