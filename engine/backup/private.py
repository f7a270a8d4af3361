"""Backups are secret: they hold the DKIM and TLS private keys, every password hash and
all mail. Whatever the umask, what a backup is made of is created for its owner alone
(directories 0700, files 0600), and `backup verify` warns about one others can reach."""
from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
OTHERS = 0o077          # any access for the group or others


def make_private_dir(path: str | os.PathLike) -> None:
    """mkdir -p where every directory made is 0700 (os.makedirs gives the parents it
    makes the umask's mode). An existing directory is left as it is."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return
    except FileNotFoundError:
        make_private_dir(os.path.dirname(os.fspath(path)))
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            pass


def write_private(path: str | os.PathLike, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def exposure(path: Path) -> str | None:
    """A warning when a backup (an archive, or a directory and the directories in it)
    is readable or writable by anyone but its owner; None when it is private. Files in a
    private directory cannot be reached, so they are not looked at one by one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        found = [(path, st.st_mode)] if st.st_mode & OTHERS else []
    else:
        found = [(path, st.st_mode)] if st.st_mode & OTHERS else []
        for top, dirs, _ in os.walk(path):
            if found:
                break
            for d in dirs:
                mode = os.lstat(os.path.join(top, d)).st_mode
                if mode & OTHERS:
                    found.append((Path(top) / d, mode))
                    break
    if not found:
        return None
    where, mode = found[0]
    return (f"{where}: the backup is open to other users (mode {stat.S_IMODE(mode):04o}) and holds private "
            f"keys and password hashes; run 'chmod -R go= {path}'")
