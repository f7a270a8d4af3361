"""Every lock mailctl takes, in one place.

- `FileLock`: flock() on a lock file, for our own read-modify-writes of TOML and state
  files; the kernel drops it when the holder dies, so it is never stale.
- `DotLock`: Dovecot's "<file>.lock" ("pid:host" inside), for files Dovecot and
  other Maildir tools share with us (dovecot-uidlist); broken when stale or its holder died.
- `dir_lock`: flock() on a directory, for small read-modify-writes inside one Maildir.
- `MailboxLock`: POP3's maildrop lock (RFC 1939 §8), a file that outlives one request.
- `pid_alive`: the one "is this process still there" check.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import socket
import time
from pathlib import Path

from . import nofollow
from .errors import LockTimeout

LOCK_TIMEOUT = 30.0            # Maildir locks: holders keep them for milliseconds
LOCK_STALE = 120.0             # a dotlock older than this is broken (Dovecot's default)
LOCK_FILE_MODE = 0o600
POP3_LOCK_NAME = "pop3.lock"
POP3_LOCK_STALE_S = 3600       # a POP3 lock whose owner is gone is taken over
# O_TMPFILE or linking it through /proc is not there (old kernel, NFS, FUSE, no /proc)
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.EXDEV, errno.EPERM)


def pid_alive(pid: int) -> bool:
    """True while process `pid` exists on this host (one we may not signal counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_is_dead(holder: str) -> bool:
    """A dotlock's "pid:host": dead only when it names a process of this host that is gone."""
    pid, _, host = holder.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not pid_alive(int(pid))


def create_holding(dir_fd: int, name: str, content: bytes, must_write: bool = False) -> bool:
    """Create lock file `name` with `content` already inside; False when it is there already.

    The file is written unnamed (O_TMPFILE), then linked into place, so no other process
    ever sees it empty: a holder killed at any moment leaves a lock whose dead pid breaks
    it at once; an empty one would shut everyone out until it is stale. File systems
    without O_TMPFILE get Dovecot's O_EXCL create, then the write. A write that fails (a
    full disk) is raised when must_write, else the lock is made empty: it still locks."""
    try:
        fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, LOCK_FILE_MODE, dir_fd=dir_fd)
    except OSError as e:
        if e.errno not in _NO_TMPFILE:
            raise
    else:
        try:
            _write(fd, content, must_write)
            # a dst_dir_fd makes os.link call linkat(), which follows the /proc link
            os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in _NO_TMPFILE:
                raise
        finally:
            os.close(fd)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     LOCK_FILE_MODE, dir_fd=dir_fd)
    except FileExistsError:
        return False
    try:
        _write(fd, content, must_write)
    except OSError:
        os.unlink(name, dir_fd=dir_fd)
        raise
    finally:
        os.close(fd)
    return True


def _write(fd: int, content: bytes, must_write: bool) -> None:
    try:
        if os.write(fd, content) != len(content):
            raise OSError(errno.ENOSPC, "short write")
    except OSError:
        if must_write:
            raise


class FileLock:
    """An exclusive lock held with flock() on a lock file.

    flock is released by the kernel when the holder dies, so a crash never leaves a
    stale lock behind. Usable as a context manager; reentrant within one object.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0):
        self.path = Path(path)
        self.timeout = timeout
        self._fd: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        if self._fd is not None:
            self._depth += 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as e:
            if e.errno != errno.EROFS or not self.path.exists():
                raise
            # flock needs no write access: on a read-only file system the locked write
            # itself then fails, naming the file the user meant rather than the lock
            fd = os.open(self.path, os.O_RDONLY)
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeout(f"{self.path}: still locked after {self.timeout:.0f}s; "
                                      f"another mailctl is busy, try again") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        self._fd = fd
        self._depth = 1

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth == 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class DotLock:
    """Dovecot's dotlock: an O_EXCL "<file>.lock" holding "pid:host", broken when stale."""

    def __init__(self, path: Path, timeout: float = LOCK_TIMEOUT, stale: float = LOCK_STALE):
        self.path = str(path)
        self.timeout = timeout
        self.stale = stale

    def __enter__(self) -> "DotLock":
        start = time.monotonic()
        deadline = start + self.timeout
        delay = 0.0002
        folder, name = os.path.split(self.path)
        dir_fd = nofollow.open_dir(folder or ".")
        try:
            holder = f"{os.getpid()}:{socket.gethostname()}".encode()
            while not create_holding(dir_fd, name, holder):
                # Holders keep it for well under a millisecond: poll briefly and often, and
                # look for a stale or dead holder (several syscalls) only after a real wait.
                now = time.monotonic()
                if now - start > 0.05 and self._break_if_stale():
                    continue
                if now >= deadline:
                    raise LockTimeout(f"{self.path}: still locked after {self.timeout:.0f}s; "
                                      f"another mail process is busy, try again") from None
                time.sleep(delay * (1 + secrets.randbelow(100) / 100))
                delay = min(delay * 2, 0.004)
        finally:
            os.close(dir_fd)
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _break_if_stale(self) -> bool:
        try:
            st = os.lstat(self.path)
            with os.fdopen(nofollow.open_file(self.path), "rb") as f:
                holder = f.read(256).decode("utf-8", "replace")
        except (PermissionError, nofollow.LinkRefused):   # a link: removed once stale, not read
            holder = ""
        except FileNotFoundError:
            return True
        if time.time() - st.st_mtime < self.stale and not holder_is_dead(holder):
            return False
        # Remove only the lock we judged; another process may have just taken a new one.
        with contextlib.suppress(FileNotFoundError):
            now = os.lstat(self.path)
            if (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns):
                os.unlink(self.path)
        return True


@contextlib.contextmanager
def dir_lock(path: Path, timeout: float = LOCK_TIMEOUT):
    """flock() on a directory: guards our small read-modify-writes without extra files."""
    fd = nofollow.open_dir(path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"{path}: still locked after {timeout:.0f}s; try again") from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)


class MailboxLock:
    """The POP3 maildrop lock (RFC 1939 §8: "exclusive-access lock on the maildrop")."""

    def __init__(self, maildir_path: Path):
        self.path = maildir_path / POP3_LOCK_NAME
        self.token = f"{os.getpid()} {time.time():.0f} {os.urandom(6).hex()}\n"
        self.held = False

    def acquire(self) -> bool:
        folder_fd = nofollow.open_dir(self.path.parent)
        try:
            for _ in range(2):
                if create_holding(folder_fd, POP3_LOCK_NAME, self.token.encode(), must_write=True):
                    self.held = True
                    return True
                if not self._stale():
                    return False
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            return False
        finally:
            os.close(folder_fd)

    def _stale(self) -> bool:
        try:
            text = self.path.read_text()
            st = self.path.stat()
        except (FileNotFoundError, OSError):
            return True
        pid = text.split()[0] if text.split() else ""
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            return True
        return time.time() - st.st_mtime > POP3_LOCK_STALE_S

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(OSError):
            if self.path.read_text() == self.token:
                os.unlink(self.path)
