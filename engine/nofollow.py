"""Nothing inside the mail root is reached through a symbolic link (issue 20).

The serving processes may run as root. A link placed in a Maildir (by a mail tool run
as the mailbox owner, a restored or hand-copied tree, a script) must not let them read
or write anywhere else: message files, folders, uidlists, keyword files, maildirsize
and TOML files are opened with O_NOFOLLOW, directories are listed through a descriptor
opened with O_DIRECTORY|O_NOFOLLOW, and an entry that is a link is skipped as if it were
not there, logged once per process (not at every sync). The root's own path may be
reached through links above it: that is the administrator's choice.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import threading

from .errors import NotFound

log = logging.getLogger("mailctl.store")

OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LOOP = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)   # what O_NOFOLLOW gives on a link

_reported: set[str] = set()
_reported_mutex = threading.Lock()


class LinkRefused(NotFound, FileNotFoundError):
    """A symbolic link where a file or directory of the root was expected. Both a
    NotFound and a FileNotFoundError: every caller treats it as missing."""


def report(path: str | os.PathLike) -> None:
    """Log a link found in the root, once per path in this process."""
    path = os.fspath(path)
    with _reported_mutex:
        if path in _reported or len(_reported) > 10_000:
            return
        _reported.add(path)
    log.warning("%s: symbolic link inside the mail root (not followed)", path)


def shown_elsewhere(paths: list[str]) -> None:
    """Links the caller lists itself (`mailctl config check`): not logged again."""
    with _reported_mutex:
        _reported.update(os.fspath(p) for p in paths)


def _refused(path: str | os.PathLike, err: OSError, dir_fd: int | None = None, shown: str = "",
             quiet: bool = False) -> Exception:
    """The error to raise for a failed O_NOFOLLOW open: LinkRefused when it met a link."""
    if err.errno in _LOOP:
        try:
            is_link = stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode)
        except OSError:
            is_link = False
        if is_link:
            if not quiet:
                report(shown or path)
            return LinkRefused(f"{os.path.basename(os.fspath(path))}: a symbolic link, not followed")
    return err


def open_file(path: str | os.PathLike, flags: int = os.O_RDONLY, mode: int = 0o600, quiet: bool = False) -> int:
    """os.open that never follows a link in the last component (LinkRefused if one is
    there). quiet: the caller shows the refusal itself (a CLI error), so it is not logged."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        raise _refused(path, e, quiet=quiet) from None


def read_bytes(path: str | os.PathLike, quiet: bool = False) -> bytes:
    with os.fdopen(open_file(path, quiet=quiet), "rb") as f:
        return f.read()


def read_text(path: str | os.PathLike, errors: str = "strict", quiet: bool = False) -> str:
    return read_bytes(path, quiet).decode("utf-8", errors)


def open_dir(path: str | os.PathLike, dir_fd: int | None = None, shown: str = "") -> int:
    """shown: the full path to log when path is relative to dir_fd."""
    try:
        return os.open(path, OPEN_DIR, dir_fd=dir_fd)
    except OSError as e:
        raise _refused(path, e, dir_fd, shown) from None


def list_files(folder: str | os.PathLike, sub: str) -> list[str]:
    """Names of the regular files in folder/sub, neither directory reached through a link.
    Links found are skipped and reported. The file types come from the directory entries
    (d_type), so 100,000 files cost no stat() each."""
    top = open_dir(folder)
    try:
        fd = open_dir(sub, dir_fd=top, shown=f"{os.fspath(folder)}/{sub}")
    finally:
        os.close(top)
    try:
        with os.scandir(fd) as it:
            entries = list(it)
    finally:
        os.close(fd)
    names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
    if len(names) != len(entries):
        for e in entries:
            if e.is_symlink():
                report(f"{os.fspath(folder)}/{sub}/{e.name}")
    return names


def check_dirs(top: str | os.PathLike, path: str | os.PathLike, missing_ok: bool = False) -> None:
    """Every directory from below top down to path is a real directory, not a link
    (LinkRefused), and exists (FileNotFoundError, unless missing_ok: those there are checked)."""
    top, path = os.fspath(top), os.fspath(path)
    # plain string work: this runs before every delivery (relpath costs more than the lstats)
    prefix = top.rstrip(os.sep) + os.sep
    rel = path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, top)
    current = top
    for part in ([] if rel in (".", "") else rel.split(os.sep)):
        if not part or part == ".":
            continue
        current = f"{current}{os.sep}{part}" if current[-1:] != os.sep else current + part
        _check_dir(current, part, missing_ok)


def _check_dir(current: str, part: str, missing_ok: bool) -> bool:
    """One directory of check_dirs(); False when it is missing and that is fine."""
    try:
        st = os.lstat(current)
    except FileNotFoundError:
        if missing_ok:
            return False
        raise
    if stat.S_ISLNK(st.st_mode):
        report(current)
        raise LinkRefused(f"{part}: a symbolic link, not followed")
    if not stat.S_ISDIR(st.st_mode):
        raise FileNotFoundError(errno.ENOTDIR, "not a directory", current)
    return True


def is_folder(top: str | os.PathLike, path: str | os.PathLike) -> bool:
    """A Maildir folder that is a real directory reached through no link below top, with
    no link for its cur/, new/ or tmp/ (one with a link is skipped as if not there). A
    missing cur/, new/ or tmp/ is fine: a half-made folder is completed by the store."""
    try:
        check_dirs(top, path)
        for sub in ("cur", "new", "tmp"):
            check_dirs(path, os.path.join(path, sub), missing_ok=True)
    except FileNotFoundError:          # LinkRefused too
        return False
    return True


def check_folder(top: str | os.PathLike, path: str | os.PathLike) -> None:
    """check_dirs() for a Maildir folder and its tmp/, new/ and cur/ (a delivery writes
    in tmp/ and renames into new/ or cur/)."""
    check_dirs(top, path)
    path = os.fspath(path)
    for sub in ("tmp", "new", "cur"):
        _check_dir(f"{path}{os.sep}{sub}", sub, missing_ok=False)


# The admin's to point elsewhere: certificates kept by certbot (its live/ names are
# links), logs and runtime files; the server reads these as links on purpose.
LINKS_ALLOWED_IN = ("tls", "log", "run")


def links_in_root(root: str | os.PathLike) -> list[str]:
    """Every symbolic link inside the root (the root itself may be reached through
    links), for `mailctl config check`. Walks by the entries' types, following none."""
    found = []
    stack = [os.fspath(root)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except OSError:
            continue
        for e in entries:
            if current == os.fspath(root) and e.name in LINKS_ALLOWED_IN:
                continue
            if e.is_symlink():
                found.append(e.path)
            elif e.is_dir(follow_symlinks=False):
                stack.append(e.path)
    return sorted(found)
