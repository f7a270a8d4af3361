"""A small real file system for fault tests: full disk (ENOSPC) and read-only (EROFS).

    with small_fs(tmp_path, "tmpfs", size_mb=8) as fs:     # or "ext4" (a loop-mounted image)
        root = make_root(fs.path)                           # a mail root on it
        fs.fill()                                           # nothing left: ENOSPC for everyone
        fs.unfill()                                         # the space back
        fs.read_only(); fs.read_write()                     # EROFS, and back (ext4 and tmpfs)

Mounting needs root (CI runs as root); elsewhere the tests that use it are skipped with
the reason. Everything mounted is unmounted on exit, also when the test fails.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


def need_mount() -> None:
    if not can_mount():
        pytest.skip("mounting a small file system needs root")


class SmallFS:
    def __init__(self, path: Path, kind: str):
        self.path = path
        self.kind = kind
        self.filler = path / ".filler"

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Write a filler file until at most `leave` bytes stay free (as another program
        filling the disk would), then take the last blocks too when leave is 0."""
        with open(self.filler, "ab", buffering=0) as f:
            chunk = b"\0" * (256 * 1024)
            while self.free_bytes() > leave + len(chunk):
                try:
                    f.write(chunk)
                except OSError:
                    break
            while self.free_bytes() > leave:
                try:
                    f.write(b"\0" * 4096)
                except OSError:
                    break
            os.fsync(f.fileno())
        if leave == 0:
            # small files still fit in inodes or partial blocks: take them too
            n = 0
            while True:
                try:
                    (self.path / f".filler-{n}").write_bytes(b"\0" * 1024)
                except OSError:
                    break
                n += 1
                if n > 100_000:
                    break

    def unfill(self) -> None:
        for p in self.path.glob(".filler*"):
            p.unlink()
        os.sync()

    def read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def read_write(self) -> None:
        subprocess.run(["mount", "-o", "remount,rw", str(self.path)], check=True)


@contextlib.contextmanager
def small_fs(tmp_path: Path, kind: str = "tmpfs", size_mb: int = 16):
    """Mount a tmpfs (kind "tmpfs") or a loop-mounted ext4 image (kind "ext4", no blocks
    reserved for root, since the tests run as root) under tmp_path; unmount on exit."""
    need_mount()
    mnt = Path(tmp_path) / f"small-{kind}"
    mnt.mkdir(parents=True, exist_ok=True)
    if kind == "tmpfs":
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(mnt)]
    elif kind == "ext4":
        image = Path(tmp_path) / "small-ext4.img"
        with open(image, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", str(image)],
                       check=True, capture_output=True)
        cmd = ["mount", "-o", "loop", str(image), str(mnt)]
    else:
        raise ValueError(kind)
    subprocess.run(cmd, check=True, capture_output=True)
    try:
        yield SmallFS(mnt, kind)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["mount", "-o", "remount,rw", str(mnt)], capture_output=True)
        for attempt in range(50):
            r = subprocess.run(["umount", str(mnt)], capture_output=True)
            if r.returncode == 0:
                break
            # a server process of the test may still hold a file: lazy unmount at the end
            if attempt == 49:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
            else:
                import time
                time.sleep(0.1)


@contextlib.contextmanager
def moved_onto(fs: SmallFS, directory: Path):
    """Put one directory of a root (say root/mail) on the small fs, bind-mounted in its
    place, so fs.read_only() works while the server keeps its logs and run/ files open for
    writing elsewhere (a remount read-only refuses a file system with such files)."""
    directory = Path(directory)
    held = fs.path / directory.name
    shutil.copytree(directory, held, symlinks=True)
    subprocess.run(["mount", "--bind", str(held), str(directory)], check=True, capture_output=True)
    try:
        yield held
    finally:
        for attempt in range(50):
            if subprocess.run(["umount", str(directory)], capture_output=True).returncode == 0:
                break
            if attempt == 49:
                subprocess.run(["umount", "-l", str(directory)], capture_output=True)
            else:
                import time
                time.sleep(0.1)
