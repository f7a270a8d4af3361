"""The mail root: its paths, atomic writes and locks.

Every change to the root is one atomic step (DESIGN.md §3): a temp file in the same
directory, fsync, rename into place, fsync the directory. Read-modify-write happens
under a lock, so concurrent mailctl runs and the server never lose each other's changes.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from .errors import MailError
from .locks import FileLock
from .storage_errors import storage_faults

ROOT_ENV = "MAILCTL_ROOT"
DEFAULT_ROOT = "mailroot"


class Root:
    """A mail root directory and the well-known places inside it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).absolute()

    @classmethod
    def locate(cls, path: str | os.PathLike | None = None) -> "Root":
        """--root, else $MAILCTL_ROOT, else ./mailroot."""
        return cls(path or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)

    def __repr__(self) -> str:
        return f"Root({str(self.path)!r})"

    # -- well-known places -------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / "mailctl.toml"

    @property
    def domains_dir(self) -> Path:
        return self.path / "domains"

    @property
    def mail_dir(self) -> Path:
        return self.path / "mail"

    @property
    def queue_dir(self) -> Path:
        return self.path / "queue"

    @property
    def pickup_dir(self) -> Path:
        return self.path / "pickup"

    @property
    def tls_dir(self) -> Path:
        return self.path / "tls"

    @property
    def dkim_dir(self) -> Path:
        return self.path / "dkim"

    @property
    def state_dir(self) -> Path:
        return self.path / "state"

    @property
    def removed_dir(self) -> Path:
        return self.path / "removed"

    @property
    def log_dir(self) -> Path:
        return self.path / "log"

    @property
    def run_dir(self) -> Path:
        return self.path / "run"

    @property
    def locks_dir(self) -> Path:
        return self.path / "run" / "locks"

    LAYOUT = ("domains", "mail", "queue", "pickup", "pickup/failed", "tls", "dkim",
              "state", "removed", "log", "run", "run/locks")

    def exists(self) -> bool:
        return self.config_file.exists()      # a directory there is reported by whoever reads it

    def require(self) -> "Root":
        """Fail with a clear message when this is not an initialised mail root."""
        if not self.exists():
            raise MailError(f"{self.path}: not a mail root (no mailctl.toml); "
                            f"run 'mailctl init' or pass --root")
        return self

    def make_layout(self) -> None:
        for sub in self.LAYOUT:
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def domain_file(self, domain: str) -> Path:
        return self.domains_dir / f"{domain}.toml"

    def relative(self, path: Path) -> str:
        """A path as stored anywhere: relative to the root, so the root can move."""
        return str(Path(path).absolute().relative_to(self.path))

    def inside(self, relpath: str) -> Path:
        """Resolve a stored relative path; refuse anything that escapes the root."""
        candidate = (self.path / relpath).resolve()
        if candidate != self.path.resolve() and self.path.resolve() not in candidate.parents:
            raise MailError(f"{relpath}: path leaves the mail root; use a path inside {self.path}")
        return candidate

    def lock(self, name: str, timeout: float = 60.0) -> "FileLock":
        """A named lock under run/locks (for example the name of a TOML file)."""
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(self.locks_dir / f"{name}.lock", timeout)


# -- durable, atomic file operations ---------------------------------------

def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so a rename or link inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(target: Path) -> Path:
    """A unique temp file beside target (same filesystem, so rename is atomic)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


# TOML files of the root hold password hashes (domains/) and credentials (mailctl.toml):
# their owner alone reads them, whatever the umask.
TOML_MODE = 0o600


def atomic_write(path: str | os.PathLike, data, mode: int = 0o640,
                 mtime: float | None = None) -> None:
    """Write data to path in one atomic, durable step: temp, fsync, rename, fsync dir.
    data: bytes, str, or an iterable of bytes pieces (a large message).
    A full or read-only disk raises StorageError naming path; the old file stays as it was."""
    target = Path(path)
    tmp = write_temp(target, data, mode, mtime)
    with storage_faults(target):
        try:
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_dir(target.parent)


def write_temp(target: Path, data, mode: int = 0o640, mtime: float | None = None) -> Path:
    """The first half of atomic_write: data in a fsync'd temp file beside target, to be
    renamed onto it later (so every byte is on disk before anything becomes visible).
    Nothing is left behind when it fails."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = temp_name(target)
    with storage_faults(target):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "wb") as f:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    f.write(data)
                else:
                    for piece in data:
                        f.write(piece)
                f.flush()
                os.fsync(f.fileno())
            if mtime is not None:
                os.utime(tmp, (mtime, mtime))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    return tmp


def create_exclusive(path: str | os.PathLike, data: bytes = b"", mode: int = 0o640) -> bool:
    """Create path only if it does not exist (an O_EXCL claim). Returns False if it did."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        if data:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return True
