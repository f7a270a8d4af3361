"""Reading message files: the whole file, its header, its sizes, and its text as served.

Messages are stored with LF line ends (as Dovecot stores them); IMAP and POP3 serve
them with CRLF, so RFC822.SIZE (the W= size) counts every bare LF as two bytes.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import nofollow
from .names import FILE_MODE

HEADER_CHUNK = 16384


def vsize(data: bytes) -> int:
    """RFC822.SIZE: the size with every bare LF counted as CRLF."""
    if b"\r" not in data:  # the usual LF-only file: one pass
        return len(data) + data.count(b"\n")
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def to_crlf(data: bytes) -> bytes:
    """Stored LF text as IMAP wants it: every LF as CRLF."""
    # Lone CRs stay as they are, so the length equals the W= size Maildir records.
    if b"\r" not in data:  # the usual LF-only file: one pass
        return data.replace(b"\n", b"\r\n")
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


FIRST_READ = 64 * 1024  # most messages are smaller: one read() and the file is whole


def read_all(path: str, size_hint: int | None = None) -> bytes:
    """A whole file by plain system calls (cheaper than Path.read_bytes for many small
    files). A read shorter than asked is the end of a regular file, so a small message
    costs open, one read and close; size_hint (its stored size, when known) sizes it."""
    fd = nofollow.open_file(path)
    try:
        want = size_hint + 1 if size_hint is not None else FIRST_READ
        data = os.read(fd, want)
        if len(data) < want:
            return data
        chunks = [data]
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def measure(path: str, size: int | None, vsize_: int | None) -> tuple[int, int] | None:
    """The sizes of a file named without ,S=/,W= and listed without S/W keys (rare: read
    it), keeping a size already known; None when the file is gone."""
    try:
        data = read_all(path)
    except FileNotFoundError:
        return None  # expunged or renamed meanwhile; the next sync sees it right
    return (len(data) if size is None else size), (vsize(data) if vsize_ is None else vsize_)


def read_message(folder, msg) -> bytes:
    """A stored message (a Message of this Folder), by a plain string path (no Path
    objects, no stat() first); found by its base name if a flag change renamed it meanwhile."""
    try:
        return read_all(f"{folder.path}/{msg.subdir}/{msg.filename}", msg._size)
    except FileNotFoundError:          # moved, or a link put in its place (folder.read refuses it)
        return folder.read(msg)


def read_header(path, fallback) -> bytes:
    """The header of a stored message and its blank line (LF line ends), read without
    the body. `fallback()` reads the whole message when the path moved meanwhile."""
    try:
        fd = nofollow.open_file(path)  # plain system calls: this runs for every message
    except FileNotFoundError:
        return fallback()
    try:
        data = b""
        while True:
            chunk = os.read(fd, HEADER_CHUNK)
            if not chunk:
                return data
            data += chunk
            if data.startswith(b"\n"):
                return b"\n"
            end = data.find(b"\n\n", max(0, len(data) - len(chunk) - 1))
            if end >= 0:
                return data[:end + 2]
    finally:
        os.close(fd)


def copy_file(src: Path, dest: Path, mtime: float) -> None:
    """A copy of a message file, fsync'd, with the same mtime (the INTERNALDATE); no half
    copy is left behind."""
    with os.fdopen(nofollow.open_file(src), "rb") as fin, open(dest, "xb") as fout:
        try:
            shutil.copyfileobj(fin, fout)
            fout.flush()
            os.fsync(fout.fileno())
        except BaseException:
            os.unlink(dest)                      # a full disk: no half copy left in tmp/
            raise
    os.chmod(dest, FILE_MODE)
    os.utime(dest, (mtime, mtime))
