"""Export one account's mail as a Maildir++ tree or as mbox files (mboxrd), with flags
and internal dates, for another server or a mail client."""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import mutf7
from .addresses import parse_address
from .errors import AlreadyExists, InvalidInput, NotFound
from .maildir import Maildir
from .root import Root

_FROM = re.compile(rb"^(>*From )", re.M)


@dataclass
class ExportResult:
    address: str
    dest: Path
    format: str
    folders: int = 0
    messages: int = 0

    def summary(self) -> str:
        return f"exported {self.messages} messages in {self.folders} folders of {self.address} to {self.dest} ({self.format})"


def _folders(box: Maildir, only: str | None) -> list[str]:
    names = [f.name for f in box.list_folders()]
    if only is None:
        return names
    box.folder(only)           # NotFound / InvalidInput with a clear message
    return [n for n in names if n == only or n.upper() == only.upper() == "INBOX"] or [only]


def export_account(root: Root, address: str, fmt: str, dest: str | os.PathLike, folder: str | None = None,
                   progress=None) -> ExportResult:
    a = parse_address(address)
    box = Maildir.for_account(root, a.domain, a.local)
    if not box.exists():
        raise NotFound(f"{a}: no mailbox; see 'mailctl account list'")
    dest = Path(dest).absolute()
    if fmt not in ("maildir", "mbox"):
        raise InvalidInput(f"--format {fmt}: use maildir or mbox")
    single_file = fmt == "mbox" and folder is not None and dest.suffix == ".mbox"
    if dest.exists() and (single_file or any(dest.iterdir()) if dest.is_dir() else True):
        raise AlreadyExists(f"{dest} exists and is not empty; export into a new place")
    result = ExportResult(str(a), dest, fmt)
    for name in _folders(box, folder):
        f = box.folder(name)
        msgs = f.sync()
        result.folders += 1
        if fmt == "maildir":
            _to_maildir(f, msgs, dest, name)
        else:
            target = dest if single_file else dest / (name + ".mbox")
            _to_mbox(f, msgs, target)
        result.messages += len(msgs)
        if progress:
            progress.advance(len(msgs))
    return result


def _to_maildir(f, msgs, dest: Path, name: str) -> None:
    fdir = dest if name == "INBOX" else dest / ("." + ".".join(mutf7.encode(c) for c in name.split("/")))
    for sub in ("cur", "new", "tmp"):
        (fdir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    if name != "INBOX":
        (fdir / "maildirfolder").touch()
    kw = f.path / "dovecot-keywords"
    if kw.exists():
        (fdir / "dovecot-keywords").write_bytes(kw.read_bytes())
    for m in msgs:
        data = f.read(m)
        p = fdir / m.subdir / m.filename
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)


def _to_mbox(f, msgs, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") as out:
        for m in msgs:
            data = f.read(m).replace(b"\r\n", b"\n")
            head, sep, body = data.partition(b"\n\n")
            extra = b""
            if b"\nstatus:" not in b"\n" + head.lower():
                extra += b"Status: RO\n" if "\\Seen" in m.flags else b"Status: O\n"
            xs = "".join(c for flag, c in (("\\Answered", "A"), ("\\Flagged", "F"), ("\\Draft", "T"),
                                           ("\\Deleted", "D")) if flag in m.flags)
            if xs and b"\nx-status:" not in b"\n" + head.lower():
                extra += f"X-Status: {xs}\n".encode()
            data = head + b"\n" + extra + (b"\n" + body if sep else b"")
            when = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(m.mtime))
            out.write(f"From MAILER-DAEMON {when}\n".encode())
            out.write(_FROM.sub(rb">\1", data))       # mboxrd quoting
            if not data.endswith(b"\n"):
                out.write(b"\n")
            out.write(b"\n")
