"""The account's quota in maildirsize (Maildir++ quota, as Dovecot keeps it).

The first line is the limit, "<bytes>S,<count>C"; each further line a change
"<bytes> <count>", appended with one O_APPEND write so concurrent writers never mix.
The file is recalculated from the message files when it grows past MAILDIRSIZE_MAX,
or when an old file says the account is over quota.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .. import nofollow
from ..errors import InvalidInput, QuotaExceeded
from ..root import atomic_write
from .names import FILE_MODE, MAILDIRSIZE, sizes_from

MAILDIRSIZE_MAX = 5120              # recalculate once the file reaches this size
MAILDIRSIZE_STALE_SECS = 15 * 60    # as Dovecot: an old, implausible maildirsize is redone


class Quota:
    """One account's maildirsize (path: the account's Maildir)."""

    def __init__(self, path: Path):
        self.path = path

    def _read(self) -> tuple[int, int, int, int, os.stat_result] | None:
        """(limit bytes, limit count, used bytes, used count, stat), None if missing or bad."""
        try:
            with os.fdopen(nofollow.open_file(self.path / MAILDIRSIZE), "rb") as f:
                st = os.fstat(f.fileno())
                lines = f.read().decode("ascii", "replace").split("\n")
            limits = _parse_header(lines[0])
            used = [0, 0]
            for line in lines[1:]:
                if line.strip():
                    nbytes, count = line.split()
                    used[0] += int(nbytes)
                    used[1] += int(count)
        except (FileNotFoundError, ValueError):
            return None
        return limits[0], limits[1], used[0], used[1], st

    def recalc(self, limit_bytes: int | None = None, limit_count: int = 0) -> tuple[int, int]:
        """Count the message files again (keeping the limit unless one is given)."""
        if limit_bytes is None:
            current = self._read()
            limit_bytes, limit_count = (current[0], current[1]) if current else (0, 0)
        nbytes, count = usage_of([self.path] + [self.path / d for d in self._all_folder_dirs()])
        atomic_write(self.path / MAILDIRSIZE, f"{limit_bytes}S,{limit_count}C\n{nbytes} {count}\n",
                     mode=FILE_MODE)
        return nbytes, count

    def _all_folder_dirs(self) -> list[str]:
        # Every folder counts, even one whose name we cannot show.
        return [e.name for e in os.scandir(self.path) if e.name.startswith(".")
                and e.name not in (".", "..") and e.is_dir(follow_symlinks=False)]

    def exists(self) -> bool:
        return (self.path / MAILDIRSIZE).exists()

    def usage(self) -> tuple[int, int]:
        """(bytes, messages) in use."""
        current = self._read()
        if current is None or current[4].st_size >= MAILDIRSIZE_MAX or _stale(current):
            return self.recalc()
        return current[2], current[3]

    def limit(self) -> int:
        """The limit is the header line; reading only it keeps delivery cheap."""
        try:
            with os.fdopen(nofollow.open_file(self.path / MAILDIRSIZE), "rb") as f:
                return _parse_header(f.readline(128).decode("ascii", "replace"))[0]
        except (FileNotFoundError, ValueError):
            return 0

    def room(self) -> int | None:
        """Bytes the account may still store; None without a limit."""
        limit = self.limit()
        return None if not limit else max(0, limit - self.usage()[0])

    def set(self, quota_bytes: int) -> None:
        if quota_bytes < 0:
            raise InvalidInput(f"quota {quota_bytes}: must be 0 (unlimited) or a number of bytes")
        current = self._read()
        self.recalc(quota_bytes, current[1] if current else 0)

    def check(self, size: int, limit: int | None = None) -> None:
        """limit: the account's quota when the caller knows it (the directory is the truth);
        None reads it from maildirsize."""
        if limit is None:
            limit = self.limit()
        if not limit:
            return
        used, _ = self.usage()
        if used + size > limit:
            raise QuotaExceeded(f"{self.path}: over quota: used {used} of {limit} bytes; "
                                f"a message of {size} bytes does not fit")

    def add(self, nbytes: int, count: int) -> None:
        """Append one delta line (one O_APPEND write, so concurrent writers never mix)."""
        try:
            fd = nofollow.open_file(self.path / MAILDIRSIZE, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            self.recalc()
            return
        try:
            os.write(fd, f"{nbytes} {count}\n".encode())
            too_big = os.fstat(fd).st_size >= MAILDIRSIZE_MAX
        finally:
            os.close(fd)
        if too_big:
            self.recalc()


def _parse_header(line: str) -> tuple[int, int]:
    limit_bytes = limit_count = 0
    for part in line.strip().split(","):
        if part.endswith("S"):
            limit_bytes = int(part[:-1])
        elif part.endswith("C"):
            limit_count = int(part[:-1])
        else:
            raise ValueError(part)
    return limit_bytes, limit_count


def _stale(current: tuple) -> bool:
    limit, _, used, count, st = current
    if used < 0 or count < 0:
        return True
    # An over-quota verdict from an old file is checked again before it refuses mail.
    return bool(limit) and used > limit and time.time() - st.st_mtime > MAILDIRSIZE_STALE_SECS


def usage_of(folder_paths: list[Path]) -> tuple[int, int]:
    """(bytes, messages) of the message files in these folders."""
    nbytes = count = 0
    for folder in folder_paths:
        for sub in ("cur", "new"):
            directory = folder / sub
            try:
                names = nofollow.list_files(folder, sub)
            except FileNotFoundError:          # or a link (LinkRefused): not counted
                continue
            for name in names:
                if name.startswith("."):
                    continue
                size, _ = sizes_from(name.partition(":")[0], "")
                if size is None:
                    try:
                        size = os.lstat(directory / name).st_size
                    except FileNotFoundError:
                        continue
                nbytes += size
                count += 1
    return nbytes, count
