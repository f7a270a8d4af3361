"""A unix socket's address whatever the length of its path.

An AF_UNIX address holds at most 107 bytes, and a mail root may lie deeper than that
allows for run/control.sock and run/submit.sock. A longer path is reached through a
descriptor of its folder (/proc/self/fd/N/name), open only while the bind or connect
runs: the socket stays reachable by its real path afterwards. The descriptor is O_PATH, so
a local user who may only pass through run/ (sendmail) can use it too. It follows a link:
run/ is the administrator's to point elsewhere (nofollow.LINKS_ALLOWED_IN).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

LONGEST = 100          # bytes, with room under the kernel's 107


@contextlib.contextmanager
def address(path: Path) -> Iterator[str]:
    """The address to bind or connect to for path, good inside the with block."""
    text = str(path)
    if len(os.fsencode(text)) <= LONGEST:
        yield text
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
