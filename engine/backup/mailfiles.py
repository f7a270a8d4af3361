"""Maildir file names and folders as the backup sees them (DESIGN.md §4).

A message file is `<base>:2,<flags>` in new/ or cur/ of a folder. Its bytes never
change; a flag change or new/ -> cur/ is a rename that keeps the base name. So the
base name identifies a message inside its folder across renames.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import nofollow
from ..maildir import letters_of, parse_keywords, parse_uidlist

MESSAGE_DIRS = ("new", "cur")       # listed in this order: files only ever move new -> cur


def base_name(name: str) -> str:
    """The part of a Maildir file name that stays across flag changes."""
    return name.split(":", 1)[0]


def flags_of(name: str) -> str:
    """The info flags of a file name ('' when it has none)."""
    _, sep, info = name.partition(":2,")
    return info if sep else ""


def with_flags(name: str, flags: str) -> str:
    return f"{base_name(name)}:2,{''.join(sorted(set(flags)))}"


def split_message_path(path: str) -> tuple[str, str, str] | None:
    """'mail/d/l/.F/cur/x:2,S' -> ('mail/d/l/.F', 'cur', 'x:2,S'); None for other files."""
    folder, _, rest = path.rpartition("/")
    folder, _, sub = folder.rpartition("/")
    if sub in MESSAGE_DIRS and folder.count("/") >= 2 and rest and not rest.startswith("."):
        return folder, sub, rest
    return None


def is_maildir_folder(path: Path) -> bool:
    return (path / "cur").is_dir() or (path / "new").is_dir()


def account_folders(account_dir: Path) -> list[Path]:
    """The account directory (INBOX) and every Maildir++ folder (.A, .A.B) beneath it,
    plus folders of the `fs` layout (A/B/) when they hold cur/ or new/."""
    out = [account_dir]
    try:
        entries = sorted(os.scandir(account_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    for e in entries:
        if e.is_dir(follow_symlinks=False) and e.name.startswith(".") and e.name not in (".", ".."):
            out.append(Path(e.path))
    return out


def list_messages(folder: Path) -> dict[str, tuple[str, str]]:
    """{base name: (sub, file name)} of a folder, new/ before cur/; cur/ wins on a race."""
    found: dict[str, tuple[str, str]] = {}
    for sub in MESSAGE_DIRS:
        try:
            names = nofollow.list_files(folder, sub)
        except FileNotFoundError:          # or a link (LinkRefused): not backed up
            continue
        for name in names:
            if name.startswith("."):
                continue
            found[base_name(name)] = (sub, name)
    return found


def find_by_base(folder: Path, base: str) -> tuple[str, str] | None:
    """Where a message with this base name is now (after a rename), or None if gone."""
    return list_messages(folder).get(base)


def read_keywords(folder: Path) -> dict[str, str]:
    """dovecot-keywords as {letter: keyword} (the store's parser)."""
    try:
        text = (folder / "dovecot-keywords").read_text("utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    return letters_of(parse_keywords(text))


@dataclass
class UidList:
    uidvalidity: int
    next_uid: int
    header_rest: list[str]
    records: list[tuple[int, str, str]]      # (uid, extra fields, base name)

    @classmethod
    def parse(cls, text: str) -> "UidList | None":
        """A v3 dovecot-uidlist read by the store's parser; None for another version."""
        parsed = parse_uidlist(text)
        if parsed is None or parsed.version != 3:
            return None
        v = n = 0
        rest = []
        for key, value in parsed.header.items():
            if key == "V" and value.isdigit():
                v = int(value)
            elif key == "N" and value.isdigit():
                n = int(value)
            else:
                rest.append(key + value)
        records = [(uid, keys, base) for base, (uid, keys) in parsed.records.items()]
        return cls(v, n, rest, records)

    def render(self) -> str:
        head = " ".join(["3", f"V{self.uidvalidity}", f"N{self.next_uid}", *self.header_rest])
        lines = [head]
        for uid, extra, base in self.records:
            lines.append(f"{uid} {extra + ' ' if extra else ''}:{base}")
        return "\n".join(lines) + "\n"
