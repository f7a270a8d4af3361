"""An external virus scanner run as a command, as hMailServer's: the message is written to a
private file, %FILE% in the arguments stands for it, and the exit code says the verdict
(0 clean, one of virus_codes infected, anything else: no verdict). The virus's name is
read from the output ("FILE: NAME FOUND" as clamdscan and clamscan print it, else the
last line printed).

No shell: the program and its arguments are a list. The file is mode 0600 in a
directory only the server's user enters, and is removed whatever happens; the command
runs in its own process group, killed whole at the timeout.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

from .verdict import Found, ScanFailed, virus_name

PLACEHOLDER = "%FILE%"
MAX_OUTPUT = 64 * 1024
_FOUND = re.compile(r": (.+?) FOUND\s*\Z")


def scan(argv: list[str], pieces, tmp_dir: Path, timeout: float, virus_codes=(1,)) -> Found:
    """Write the message (an iterable of bytes) to a file and run the command on it."""
    _private_dir(tmp_dir)
    fd, path = tempfile.mkstemp(dir=tmp_dir, prefix="scan-", suffix=".eml")     # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            for piece in pieces:
                f.write(piece)
        return _run([a.replace(PLACEHOLDER, path) for a in argv], tmp_dir, timeout, virus_codes, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _private_dir(tmp_dir: Path) -> None:
    """tmp_dir (one per user: root's `mailctl send` and the serving user each have their
    own) mode 0700, in a parent every user may pass through but not list (0711)."""
    try:
        tmp_dir.parent.mkdir()
        os.chmod(tmp_dir.parent, 0o711)
    except FileExistsError:
        pass
    tmp_dir.mkdir(mode=0o700, exist_ok=True)


def _run(argv: list[str], tmp_dir: Path, timeout: float, virus_codes, path: str) -> Found:
    program = Path(argv[0]).name
    with tempfile.TemporaryFile(dir=tmp_dir) as out:        # bounded reading, whatever it prints
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    close_fds=True, start_new_session=True)
        except OSError as e:
            raise ScanFailed(f"scanner {program}: {e.strerror or e}") from None
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise ScanFailed(f"scanner {program}: no answer within {timeout:g} s") from None
        out.seek(0)
        # the file's name is no business of the client's (the name may reach a reply)
        output = out.read(MAX_OUTPUT).decode("utf-8", "replace").replace(path, "message")
    if code == 0:
        return Found(engine=program)
    if code in virus_codes:
        return Found(name_in_output(output) or f"unknown virus (exit code {code})", program)
    raise ScanFailed(f"scanner {program}: exit code {code}")


def name_in_output(output: str) -> str | None:
    """The virus's name in a scanner's output: 'FILE: NAME FOUND', else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        m = _FOUND.search(line)
        if m and virus_name(m.group(1).strip()):
            return m.group(1).strip()
    return virus_name(lines[-1][:200]) if lines else None
