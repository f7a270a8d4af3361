"""Copying a file into a backup or back out of it, and flushing the result: copy_new
(a new file with given mode and mtime, in the kernel with copy_file_range where it can)
and sync_filesystem (one syncfs instead of an fsync per file). Used by create and restore."""
from __future__ import annotations

import errno
import os
from pathlib import Path


def copy_new(src: str | Path, dst: str | Path, mode: int, mtime: float) -> None:
    """dst made anew (it must not exist) with src's bytes, then mode and mtime; nothing
    is left at dst when it fails."""
    # O_EXCL without O_TRUNC: ext4 starts writeback on close of a truncated file,
    # which made restores several times slower.
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(src, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            offset = 0
            while offset < size:
                n = _copy_range(f.fileno(), fd, size - offset)
                if n <= 0:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    n = len(chunk)
                offset += n
        os.fchmod(fd, mode)
        os.utime(fd, (mtime, mtime))
    except BaseException:
        os.close(fd)
        os.unlink(dst)
        raise
    os.close(fd)


_HAVE_CFR = hasattr(os, "copy_file_range")
# copy_file_range between two file systems: EXDEV on kernels since 5.19 (and before 5.3)
_NO_CFR = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}


def _copy_range(src_fd: int, dst_fd: int, count: int) -> int:
    """Bytes copied in the kernel; 0 when it cannot (then the caller reads and writes)."""
    if not _HAVE_CFR:
        return 0
    try:
        return os.copy_file_range(src_fd, dst_fd, count)
    except OSError as e:
        if e.errno not in _NO_CFR:
            raise
        return 0


def sync_filesystem(path: Path) -> None:
    """Flush the file system holding path (syncfs): cheaper than an fsync per file written."""
    import ctypes
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    except (OSError, AttributeError):
        os.sync()
    finally:
        os.close(fd)
