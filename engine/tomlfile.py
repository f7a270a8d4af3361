"""TOML files of the mail root: parse with precise errors, locate keys by line, and
edit under a lock with comments and layout of hand edits preserved."""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Callable

from . import nofollow
from .errors import ConfigError
from .locks import FileLock
from .root import TOML_MODE, atomic_write
from .tomlsyntax import KEY_VALUE, TABLE_HEADER, split_key, tomllib

_AT_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


MAX_BYTES = 256 * 1024 * 1024      # a configuration file larger than this is a mistake (or /dev/zero)


def parse_text(text: str, where: str) -> dict:
    """Parse TOML text; a syntax error becomes 'file:line: syntax: message'."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _AT_LINE.search(msg)
        line = m.group(1) if m else "1"
        msg = _AT_LINE.sub("", msg).strip()
        raise ConfigError(f"{where}:{line}: syntax: {msg}") from None
    except RecursionError:          # tomli refuses nesting past 400 levels this way
        raise ConfigError(f"{where}:{_deepest_line(text)}: syntax: arrays or inline tables "
                          f"nested too deeply") from None


_TOKEN = re.compile(r"""\n|#[^\n]*|"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[\[\]{}]""")


def _deepest_line(text: str) -> int:
    """The line where brackets outside strings and comments first reach their deepest
    nesting (a rough scan, used only to place a 'nested too deeply' error)."""
    depth = deepest = 0
    line = where = 1
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok == "\n":
            line += 1
        elif tok in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, line
        elif tok in "]}":
            depth -= 1
    return where


def read(path: Path, display: str | None = None) -> tuple[dict, str]:
    """Read and parse a TOML file; returns (data, text). Whatever is at `path` (a
    directory, a FIFO, a file that vanishes or cannot be read) becomes a ConfigError."""
    where = display or str(path)
    raw = read_regular(path, where)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{where}:{line}: syntax: not valid UTF-8") from None
    return parse_text(text, where), text


def read_regular(path: Path, where: str) -> bytes:
    """The bytes of a regular file, never blocking on a FIFO or device, never through a
    symbolic link (a link inside the root is refused, DESIGN.md §3.4)."""
    try:
        fd = nofollow.open_file(path, os.O_RDONLY | os.O_NONBLOCK)
    except nofollow.LinkRefused:
        raise ConfigError(f"{where}: symbolic link inside the mail root (not followed); "
                          f"put the file itself there") from None
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{where}: is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: not a regular file")
        if st.st_size > MAX_BYTES:
            raise ConfigError(f"{where}: {st.st_size} bytes; a configuration file is at most {MAX_BYTES}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{where}: cannot read: {e.strerror}") from None
    finally:
        os.close(fd)


# -- finding the line of a key, for 'file:line: key: problem' -------------------

def find_line(text: str, keypath: list[str]) -> int:
    """Line number (1-based) where keypath is defined; best prefix match, else 1."""
    best_len, best_line = 0, 1
    table: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = TABLE_HEADER.match(line)
        if m and stripped.startswith("["):
            table = split_key(m.group(1))
            full = table
        else:
            m = KEY_VALUE.match(line)
            if not m:
                continue
            full = table + split_key(m.group(1))
        n = 0
        for a, b in zip(full, keypath):
            if a != b:
                break
            n += 1
        if n > best_len or (n == len(keypath) and n == len(full) and n >= best_len):
            if n > best_len:
                best_len, best_line = n, lineno
            if n == len(keypath):
                return lineno
    return best_line


# -- writing ---------------------------------------------------------------

def edit(path: Path, lock: FileLock, change: Callable[[dict], Any], display: str | None = None,
         validate: Callable[[dict, str], None] | None = None) -> Any:
    """Read-modify-write a TOML file under lock, atomically, keeping comments.

    Refuses to write over a file that does not parse (a half-finished hand edit).
    `change` mutates a plain dict copy of the data and may return a value, which edit
    returns. `validate(data, text)` may raise to abort without writing. Only the lines
    that changed are rewritten (engine.tomlpatch).
    """
    from .tomlpatch import patch    # it loads tomlkit (15 ms): only a command that edits pays for it
    where = display or str(path)
    with lock:
        old, text = read(path, where)
        new = parse_text(text, where)    # a private copy; parsing is cheaper than deepcopy
        result = change(new)
        new_text = patch(text, old, new)
        if validate is not None:
            validate(new, new_text)
        if new_text != text:
            atomic_write(path, new_text, mode=TOML_MODE)
        return result
