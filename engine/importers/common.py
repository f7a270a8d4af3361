"""What every mail importer shares: the per-account import journal (dedupe and
resume), message keys, flag conversion, and the count of imported/skipped/failed."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .. import nofollow
from ..addresses import parse_address
from ..errors import AlreadyExists, MailError, NotFound
from ..maildir import Maildir
from ..root import Root
from ..backup.progress import SILENT, Progress

MAILDIR_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "P": "$Forwarded", "R": "\\Answered", "S": "\\Seen",
                 "T": "\\Deleted"}
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass
class ImportCounts:
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    folders: set = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def summary(self, what: str) -> str:
        s = f"{what}: {self.imported} imported, {self.skipped} skipped (already there), {self.failed} failed"
        return s + (f" in {len(self.folders)} folders" if self.folders else "")


def to_lf(data: bytes) -> bytes:
    """The store keeps LF line ends (as Dovecot does)."""
    return data.replace(b"\r\n", b"\n")


def header_value(data: bytes, name: bytes) -> bytes:
    m = _HEADER_END.search(data)
    head = data[: m.start()] if m else data
    value = None
    lines = head.split(b"\n")
    for i, line in enumerate(lines):
        if line[: len(name) + 1].lower() == name.lower() + b":":
            parts = [line[len(name) + 1:]]
            for cont in lines[i + 1:]:
                if cont[:1] in (b" ", b"\t"):
                    parts.append(cont)
                else:
                    break
            value = b" ".join(p.strip() for p in parts)
            break
    return value or b""


def message_key(folder: str, data: bytes) -> str:
    """Message-ID + Date + size (CRLF size) when there is a Message-ID, else the bytes' hash."""
    lf = to_lf(data)
    msgid = header_value(lf, b"message-id").strip()
    h = hashlib.sha256(folder.encode("utf-8", "surrogateescape") + b"\0")
    if msgid:
        vsize = len(lf) + lf.count(b"\n")
        h.update(b"id\0" + msgid + b"\0" + header_value(lf, b"date").strip() + b"\0" + str(vsize).encode())
    else:
        h.update(b"hash\0" + lf)
    return h.hexdigest()[:40]


def header_key(folder: str, msgid: bytes, date: bytes, vsize: int) -> str | None:
    """The same key computed from headers and RFC822.SIZE alone (IMAP, before download)."""
    if not msgid.strip():
        return None
    h = hashlib.sha256(folder.encode("utf-8", "surrogateescape") + b"\0")
    h.update(b"id\0" + msgid.strip() + b"\0" + date.strip() + b"\0" + str(vsize).encode())
    return h.hexdigest()[:40]


class Journal:
    """state/import/<domain>/<local>.log: 'pending KEY FOLDER BASE' before a message
    becomes visible, 'done KEY' after. On restart a pending message is looked up by
    its base name: found means it was committed before the interruption."""

    def __init__(self, root: Root, maildir: Maildir, domain: str, local: str):
        self.path = root.state_dir / "import" / domain / f"{local}.log"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.maildir = maildir
        self.done: set[str] = set()
        pending: dict[str, tuple[str, str]] = {}
        try:
            text = nofollow.read_text(self.path, "replace", quiet=True)
        except FileNotFoundError:          # a link too: refused by the open below
            text = ""
        for line in text.splitlines():
            parts = line.split(" ")
            if parts[0] == "done" and len(parts) >= 2:
                self.done.add(parts[1])
                pending.pop(parts[1], None)
            elif parts[0] == "pending" and len(parts) >= 4:
                pending[parts[1]] = (parts[2], parts[3])
        self.fd = nofollow.open_file(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600, quiet=True)
        if text and not text.endswith("\n"):
            os.write(self.fd, b"\n")            # a line cut by a crash
        for key, (folder, base) in pending.items():
            if self._committed(folder, base):
                self.mark_done(key)

    def _committed(self, folder: str, base: str) -> bool:
        try:
            path = self.maildir.folder(_unquote(folder)).path
        except MailError:
            return False
        for sub in ("new", "cur"):
            try:
                if any(n.partition(":")[0] == base for n in os.listdir(path / sub)):
                    return True
            except FileNotFoundError:
                pass
        return False

    def mark_pending(self, key: str, folder: str, base: str) -> None:
        os.write(self.fd, f"pending {key} {_quote(folder)} {base}\n".encode())
        os.fsync(self.fd)

    def mark_done(self, key: str) -> None:
        os.write(self.fd, f"done {key}\n".encode())
        self.done.add(key)

    def close(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)


def _quote(folder: str) -> str:
    return folder.encode("utf-8").hex()


def _unquote(folder: str) -> str:
    return bytes.fromhex(folder).decode("utf-8")


class Importer:
    """Delivers messages into one account, once each."""

    def __init__(self, root: Root, address: str, progress: Progress = SILENT):
        root.require()
        a = parse_address(address)
        from .. import settings as settings_mod
        from ..directory import Directory
        directory = Directory.load(root, settings_mod.load(root.config_file), strict=False)
        if directory.account(str(a)) is None:
            raise NotFound(f"account {a} does not exist; add it with 'mailctl account add {a}' first")
        self.root = root
        self.address = str(a)
        self.maildir = Maildir.for_account(root, a.domain, a.local)
        if not self.maildir.exists():
            self.maildir.create()
        self.lock = root.lock(f"import-{a.domain}-{a.local}", timeout=5)
        self.lock.acquire()
        self.journal = Journal(root, self.maildir, a.domain, a.local)
        self.counts = ImportCounts()
        self.progress = progress
        self._folders: set[str] = set()

    def close(self) -> None:
        self.journal.close()
        self.lock.release()

    def __enter__(self) -> "Importer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ensure_folder(self, name: str) -> str:
        if name.upper() == "INBOX":
            return "INBOX"
        if name not in self._folders:
            try:
                self.maildir.create_folder(name)
            except AlreadyExists:
                pass
            self._folders.add(name)
        return name

    def seen(self, key: str | None) -> bool:
        return key is not None and key in self.journal.done

    def add(self, folder: str, data: bytes, flags: Iterable[str] = (), internaldate: float | None = None,
            key: str | None = None, where: str = "") -> str:
        """Import one message; returns 'imported', 'skipped' or 'failed'."""
        self.progress.advance(1)
        try:
            folder = self.ensure_folder(folder)
            data = to_lf(data)
            key = key or message_key(folder, data)
            if key in self.journal.done:
                self.counts.skipped += 1
                return "skipped"
            staged = self.maildir.stage(data, folder, set(flags), internaldate, check_quota=False)
            try:
                self.journal.mark_pending(key, folder, staged.base)
                staged.commit()
            except BaseException:
                staged.abort()
                raise
            self.journal.mark_done(key)
            self.counts.imported += 1
            self.counts.folders.add(folder)
            return "imported"
        except (MailError, OSError, ValueError) as e:
            self.counts.failed += 1
            problem = f"{where or folder}: {e}"
            self.counts.problems.append(problem)
            self.progress.note(problem)
            return "failed"


def maildir_flags(info: str, keywords: dict[str, str]) -> set[str]:
    out = set()
    for c in info.partition(",")[0]:
        if c in MAILDIR_FLAGS:
            out.add(MAILDIR_FLAGS[c])
        elif c in keywords:
            out.add(keywords[c])
    return out


def require_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise NotFound(f"{p}: no such {what}")
    return p
