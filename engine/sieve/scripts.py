"""Sieve scripts as files, in Pigeonhole's default layout (`sieve = file:~/sieve;
active=~/.dovecot.sieve`), so Dovecot configured on the same root runs the same scripts.

Per account, home = the account's Maildir (mail/<domain>/<local>/):
    <home>/sieve/<name>.sieve     the named scripts
    <home>/.dovecot.sieve         a symbolic link to sieve/<name>.sieve: the active one
Global scripts: <root>/sieve/before.d/*.sieve and after.d/*.sieve (sieve_before/_after),
run in name order.

The link is read with os.readlink, never followed by open: only a target inside sieve/
with a plain name counts; the script itself is opened with O_NOFOLLOW. ManageSieve and
`mailctl rule` use the functions here (list/read/put/activate/delete/rename)."""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from .. import nofollow
from ..errors import InvalidInput, NotFound
from ..root import atomic_write, fsync_dir
from .interp import Script

SCRIPTS_DIR = "sieve"
ACTIVE_LINK = ".dovecot.sieve"
SUFFIX = ".sieve"
MAX_NAME = 128
_NAME = re.compile(r"[^/\\\x00-\x1f\x7f]+")


def check_name(name: str) -> str:
    """A script name: no path, no dot first, no control characters (RFC 5804 §1.6 allows
    more, but the name is a file name here)."""
    if not name or len(name) > MAX_NAME or name.startswith(".") or not _NAME.fullmatch(name):
        raise InvalidInput(f"{name!r}: not a valid script name")
    return name


def _path(home: Path, name: str) -> Path:
    return Path(home) / SCRIPTS_DIR / (check_name(name) + SUFFIX)


def list_scripts(home: Path) -> list[tuple[str, bool]]:
    """(name, active) of every script, by name."""
    try:
        files = nofollow.list_files(home, SCRIPTS_DIR)
    except FileNotFoundError:
        return []
    active = active_name(home)
    names = sorted(f[:-len(SUFFIX)] for f in files if f.endswith(SUFFIX) and not f.startswith("."))
    return [(n, n == active) for n in names]


def active_name(home: Path) -> str | None:
    """The active script's name, or None (no link, or a link pointing anywhere else)."""
    try:
        target = os.readlink(Path(home) / ACTIVE_LINK)
    except (FileNotFoundError, OSError):
        return None
    prefix = SCRIPTS_DIR + "/"
    if not target.startswith(prefix) or not target.endswith(SUFFIX):
        absolute = str(Path(home).absolute() / SCRIPTS_DIR) + "/"     # an absolute link to our own dir
        if not target.startswith(absolute) or not target.endswith(SUFFIX):
            return None
        prefix = absolute
    name = target[len(prefix):-len(SUFFIX)]
    try:
        return check_name(name)
    except InvalidInput:
        return None


def read_script(home: Path, name: str) -> str:
    path = _path(home, name)
    try:
        nofollow.check_dirs(home, path.parent)
        return nofollow.read_text(path, errors="replace")
    except FileNotFoundError:
        raise NotFound(f"no script {name!r}") from None


def active_script(home: Path) -> tuple[str, str] | None:
    """(name, text) of the active script, or None."""
    name = active_name(home)
    if name is None:
        return None
    try:
        return name, read_script(home, name)
    except NotFound:
        return None


def include_loader(home: Path, root_path: Path, compile=Script):
    """What an include (RFC 6609) finds: :personal, the account's script of that name;
    :global, ROOT/sieve/global/NAME.sieve (Pigeonhole's sieve_global); compiled with compile."""
    def load(location: str, name: str):
        try:
            if location == "personal":
                text = read_script(home, name)
            else:
                path = Path(root_path) / SCRIPTS_DIR / "global" / f"{check_name(name)}{SUFFIX}"
                nofollow.check_dirs(root_path, path.parent)
                text = nofollow.read_text(path, errors="replace")
        except (FileNotFoundError, InvalidInput, NotFound):
            return None
        return compile(text)
    return load


def put_script(home: Path, name: str, text: str) -> None:
    """Store a script after checking it compiles (SieveError "line N: ..." otherwise)."""
    Script(text)
    path = _path(home, name)
    nofollow.check_dirs(Path(home).parent, path.parent, missing_ok=True)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"), mode=0o600)


def activate(home: Path, name: str | None) -> None:
    """Make name the active script (None: none active), by replacing the link atomically."""
    link = Path(home) / ACTIVE_LINK
    if name is None:
        with contextlib.suppress(FileNotFoundError):
            if not link.is_symlink():
                raise InvalidInput(f"{ACTIVE_LINK} is not a link; left alone")
            link.unlink()
        return
    if not _path(home, name).is_file():
        raise NotFound(f"no script {name!r}")
    tmp = link.with_name(f"{ACTIVE_LINK}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(f"{SCRIPTS_DIR}/{name}{SUFFIX}", tmp)
    os.replace(tmp, link)
    fsync_dir(home)


def delete_script(home: Path, name: str) -> None:
    if active_name(home) == name:
        raise InvalidInput(f"script {name!r} is active")
    try:
        _path(home, name).unlink()
    except FileNotFoundError:
        raise NotFound(f"no script {name!r}") from None


def rename_script(home: Path, old: str, new: str) -> None:
    src, dst = _path(home, old), _path(home, new)
    if dst.exists():
        raise InvalidInput(f"script {new!r} exists")
    if not src.is_file():
        raise NotFound(f"no script {old!r}")
    was_active = active_name(home) == old
    os.rename(src, dst)
    if was_active:
        activate(home, new)


# Global scripts as last read, by directory: {path: (stamp, scripts)}. Every message
# asks for them; reading them through nofollow each time cost more than the rest of the
# Sieve stage. The stamp (the directory's and each script's inode, mtime and size)
# changes with any edit, rename or replacement, and then they are read again.
_global_read: dict[str, tuple[tuple, list[tuple[str, str]]]] = {}


def global_scripts(root_path: Path, which: str) -> list[tuple[str, str]]:
    """(name, text) of the global scripts in <root>/sieve/<which>.d/, by name."""
    folder = Path(root_path) / SCRIPTS_DIR
    where = f"{folder}/{which}.d"
    kept = _global_read.get(where)
    stamp = _stamp(where, [name for name, _ in kept[1]] if kept is not None else [])
    if stamp is None:                 # no such directory: the usual case, one lstat
        _global_read.pop(where, None)
        return []
    if kept is not None and kept[0] == stamp:
        return kept[1]
    try:
        files = nofollow.list_files(folder, f"{which}.d")
    except FileNotFoundError:
        _global_read.pop(where, None)
        return []
    names = [f"{which}.d/{f}" for f in sorted(files) if f.endswith(SUFFIX) and not f.startswith(".")]
    before = _stamp(where, names)
    out = []
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            out.append((name, nofollow.read_text(folder / name, errors="replace")))
    if _stamp(where, [name for name, _ in out]) == before:     # nothing changed while read
        _global_read[where] = (before, out)
    return out


def _stamp(where: str, names: list[str]) -> tuple | None:
    """What changes when <which>.d or one of the scripts named changes; None: no directory."""
    try:
        st = os.lstat(where)
    except (FileNotFoundError, NotADirectoryError):
        return None
    parts = [(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_mode)]
    for name in names:
        try:
            f = os.lstat(f"{where}/{name.split('/', 1)[1]}")
            parts.append((name, f.st_ino, f.st_mtime_ns, f.st_size))
        except OSError:
            parts.append((name, None))
    return tuple(parts)
