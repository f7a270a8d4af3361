"""Import a Maildir tree: Dovecot or Courier Maildir++ (.A.B folders, modified UTF-7)
or the fs layout (A/B/ directories), with flags, dovecot-keywords and internal
dates (the files' mtime) preserved."""
from __future__ import annotations

import os
from pathlib import Path

from .. import mutf7
from ..backup.mailfiles import read_keywords
from ..errors import InvalidInput
from .common import ImportCounts, Importer, maildir_flags, require_file


def find_folders(top: Path) -> list[tuple[str, Path]]:
    """(IMAP name, directory) of every folder under a Maildir tree."""
    if not (top / "cur").is_dir() and not any(top.glob(".*/cur")) and not any(top.glob("*/cur")):
        raise InvalidInput(f"{top}: not a Maildir (no cur/ directory in it or its folders)")
    out = []
    if (top / "cur").is_dir():
        out.append(("INBOX", top))
    for dirpath, dirnames, _ in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in ("cur", "new", "tmp") and not d.startswith("courier"))
        here = Path(dirpath)
        if here == top:
            continue
        if not (here / "cur").is_dir():
            continue
        rel = here.relative_to(top)
        if len(rel.parts) == 1 and rel.parts[0].startswith("."):
            raw = rel.parts[0][1:]
            if raw.upper().startswith("INBOX."):        # Courier's old namespace prefix
                raw = raw[6:]
            comps = raw.split(".")
        else:
            comps = list(rel.parts)
        try:
            name = "/".join(mutf7.decode(c) for c in comps)
        except Exception:
            name = "/".join(comps)
        out.append((name, here))
    return out


def import_maildir(importer: Importer, path: str | os.PathLike) -> ImportCounts:
    top = require_file(path, "Maildir").absolute()
    folders = find_folders(top)
    files = []
    for name, fdir in folders:
        keywords = read_keywords(fdir)
        for sub in ("cur", "new"):
            try:
                names = sorted(os.listdir(fdir / sub))
            except FileNotFoundError:
                continue
            # regular files only: a symlink in someone else's tree is not a message
            files.extend((name, fdir / sub / n, keywords) for n in names
                         if not n.startswith(".") and (fdir / sub / n).is_file() and not (fdir / sub / n).is_symlink())
    importer.progress.start(f"importing {top}", len(files))
    for name, path_, keywords in files:
        try:
            with open(path_, "rb") as f:
                data = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
        except OSError as e:
            importer.counts.failed += 1
            importer.counts.problems.append(f"{path_}: {e.strerror}")
            continue
        info = path_.name.partition(":2,")[2] if ":2," in path_.name else ""
        importer.add(name, data, maildir_flags(info, keywords), mtime, where=str(path_))
    return importer.counts
