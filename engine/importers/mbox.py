"""Import an mbox file (mboxo or mboxrd): messages split at 'From ' lines that follow
a blank line and carry a date, '>From ' quoting undone, Status/X-Status as flags, the
From_ line's date as internal date."""
from __future__ import annotations

import calendar
import email.utils
import os
import re
import time
from pathlib import Path
from typing import Iterator

from .common import ImportCounts, Importer, header_value, require_file

_FROM_LINE = re.compile(rb"^From \S*\s.*\d\d?:\d\d.*\d{4}")
_QUOTED = re.compile(rb"^>(>*From )", re.M)


def split_mbox(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(From_ line, message bytes) for each message."""
    with open(path, "rb") as f:
        from_line = None
        lines: list[bytes] = []
        prev_blank = True
        for line in f:
            if line.startswith(b"From ") and prev_blank and _FROM_LINE.match(line):
                if from_line is not None:
                    yield from_line, _finish(lines)
                from_line, lines = line, []
                prev_blank = False
                continue
            if from_line is None:
                if line.strip():
                    raise ValueError(f"{path}: not an mbox file (it does not start with a 'From ' line)")
                continue
            lines.append(line)
            prev_blank = line in (b"\n", b"\r\n")
        if from_line is not None:
            yield from_line, _finish(lines)


def _finish(lines: list[bytes]) -> bytes:
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines = lines[:-1]           # the separator blank line belongs to the mbox, not the message
    return _QUOTED.sub(rb"\1", b"".join(lines))


def from_line_date(line: bytes) -> float | None:
    parts = line.decode("ascii", "replace").split()
    for n in (5, 6):
        try:
            return float(calendar.timegm(time.strptime(" ".join(parts[2:2 + n]), "%a %b %d %H:%M:%S %Y")))
        except (ValueError, IndexError):
            continue
    return None


def status_flags(data: bytes) -> set[str]:
    flags = set()
    status = header_value(data, b"status").decode("ascii", "replace")
    xstatus = header_value(data, b"x-status").decode("ascii", "replace")
    if "R" in status:
        flags.add("\\Seen")
    for c, flag in (("A", "\\Answered"), ("F", "\\Flagged"), ("T", "\\Draft"), ("D", "\\Deleted")):
        if c in xstatus:
            flags.add(flag)
    return flags


def import_mbox(importer: Importer, path: str | os.PathLike, folder: str = "INBOX") -> ImportCounts:
    p = require_file(path, "mbox file")
    importer.progress.start(f"importing {p.name}", None)
    try:
        for n, (from_line, data) in enumerate(split_mbox(p), 1):
            date = from_line_date(from_line)
            if date is None:
                parsed = email.utils.parsedate_tz(header_value(data, b"date").decode("ascii", "replace"))
                date = email.utils.mktime_tz(parsed) if parsed else None
            importer.add(folder, data, status_flags(data), date, where=f"{p}: message {n}")
    except ValueError as e:
        from ..errors import InvalidInput
        raise InvalidInput(str(e)) from None
    return importer.counts
