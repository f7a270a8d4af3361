"""Annotations of an account and of its folders (IMAP METADATA, RFC 5464), in files of
ours: `mailctl-metadata` in a folder's directory (INBOX's: the top of the tree) and
`mailctl-server-metadata` at the top for the server's entries (mailbox ""). A folder's
file moves with a rename and goes with a delete, as the directory does.

Entry names are client input and never become paths: a name is checked (check_entry)
and is then only a key in the file, a JSON object {entry: value}. A value is a string
when it is UTF-8, else {"base64": ...}. A change is one locked read-modify-write of the
whole file, written by atomic rename: another session (or serving process) sees all of
a SETMETADATA or none of it. Entry names are case-insensitive (RFC 5464 §3.2 ABNF
examples; Dovecot lowercases them): they are kept in lower case.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

from .. import nofollow
from ..errors import InvalidInput, MailError
from ..locks import dir_lock
from ..root import atomic_write
from .names import FILE_MODE

METADATA_FILE = "mailctl-metadata"
SERVER_METADATA_FILE = "mailctl-server-metadata"
MAX_VALUE = 64 * 1024          # METADATA MAXSIZE: the largest value one entry may hold
MAX_ENTRIES = 64               # METADATA TOOMANY: entries one mailbox (or the server) may hold
MAX_ENTRY_NAME = 1024
PREFIXES = ("/private", "/shared")


class TooLarge(MailError):
    """A value over MAX_VALUE (the reply names the limit: NO [METADATA MAXSIZE n])."""


class TooMany(MailError):
    """More than MAX_ENTRIES entries would be kept (NO [METADATA TOOMANY])."""


def check_entry(name: str, settable: bool = True) -> str:
    """The entry name in its kept form (lower case); InvalidInput says why it is not one.
    RFC 5464 §3.2: it starts with /private or /shared, holds no "*" or "%", no "//", no
    control character and does not end in "/". We also refuse "." and ".." components:
    meaningless as names, and what a path trick would look like. settable: a name to
    give a value to, so one below /private or /shared, not the prefix itself."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("empty metadata entry name")
    if len(name) > MAX_ENTRY_NAME:
        raise InvalidInput(f"metadata entry name longer than {MAX_ENTRY_NAME} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidInput("metadata entry name holds a control character")
    if "*" in name or "%" in name:
        raise InvalidInput("metadata entry name holds '*' or '%'")
    if "//" in name:
        raise InvalidInput("metadata entry name holds '//'")
    if name.endswith("/"):
        raise InvalidInput("metadata entry name ends with '/'")
    key = name.lower()
    prefix = next((p for p in PREFIXES if key == p or key.startswith(p + "/")), None)
    if prefix is None:
        raise InvalidInput("metadata entry name must begin with /private/ or /shared/")
    if settable and key == prefix:
        raise InvalidInput(f"metadata entry {prefix} holds no value; name one below it")
    if any(part in (".", "..") for part in key.split("/")):
        raise InvalidInput("metadata entry name holds a '.' or '..' component")
    return key


def read(path: Path) -> dict[str, bytes]:
    """The entries of one metadata file ({} when there is none or it is unreadable)."""
    try:
        data = json.loads(nofollow.read_text(path))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError):
        return {}                        # damaged: treated as empty, rewritten on the next change
    out: dict[str, bytes] = {}
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        if isinstance(value, str):
            out[key] = value.encode("utf-8")
        elif isinstance(value, dict) and isinstance(value.get("base64"), str):
            try:
                out[key] = base64.b64decode(value["base64"], validate=True)
            except ValueError:
                continue
    return out


def lookup(entries: dict[str, bytes], name: str, depth: int | None) -> list[tuple[str, bytes | None]]:
    """RFC 5464 §4.2.2: the entry itself (None when it has no value), and with depth 1 its
    children, with depth None (infinity) every descendant that has a value."""
    out: list[tuple[str, bytes | None]] = [(name, entries.get(name))]
    if depth != 0:
        below = name + "/"
        for key in sorted(entries):
            if key.startswith(below) and (depth is None or "/" not in key[len(below):]):
                out.append((key, entries[key]))
        if out[0][1] is None:          # with a depth, a name without a value is left out
            out = out[1:]
    return out


def change(path: Path, changes: list[tuple[str, bytes | None]]) -> None:
    """Set (bytes) or remove (None) entries of the file at path, all or none."""
    for _, value in changes:
        if value is not None and len(value) > MAX_VALUE:
            raise TooLarge(f"a metadata value may hold at most {MAX_VALUE} bytes")
    with dir_lock(path.parent):
        entries = read(path)
        before = dict(entries)
        for key, value in changes:
            if value is None:
                entries.pop(key, None)
            else:
                entries[key] = value
        if entries == before:
            return
        if len(entries) > MAX_ENTRIES and len(entries) > len(before):
            raise TooMany(f"a mailbox may hold at most {MAX_ENTRIES} metadata entries")
        atomic_write(path, _encode(entries), mode=FILE_MODE)


def _encode(entries: dict[str, bytes]) -> str:
    out = {}
    for key in sorted(entries):
        value = entries[key]
        try:
            out[key] = value.decode("utf-8")
        except UnicodeDecodeError:
            out[key] = {"base64": base64.b64encode(value).decode("ascii")}
    return json.dumps(out, ensure_ascii=False, indent=1) + "\n"


def file_of(maildir, mailbox: str) -> Path:
    """The metadata file of a mailbox of maildir (a Maildir), "" for the server's;
    NotFound when the mailbox does not exist."""
    if mailbox == "":
        return maildir.path / SERVER_METADATA_FILE
    return maildir.folder(mailbox).path / METADATA_FILE
