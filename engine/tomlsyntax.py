"""TOML's line syntax, shared by the reader (engine.tomlfile) and the patcher
(engine.tomlpatch): the parser to use, table headers, `key =` lines and dotted keys."""
from __future__ import annotations

import re

try:    # the compiled tomli parses about 3x faster than the stdlib's pure-Python copy of it
    import tomli as tomllib
except ImportError:  # pragma: no cover
    import tomllib

__all__ = ["tomllib", "TABLE_HEADER", "KEY_VALUE", "split_key"]

TABLE_HEADER = re.compile(r"^\s*\[\[?\s*(.+?)\s*\]\]?\s*(#.*)?$")
KEY_VALUE = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'))*)\s*=""")
_KEYPART = re.compile(r"""\s*([A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')\s*(?:\.|$)""")


def split_key(dotted: str) -> list[str]:
    """A dotted key ('a."b.c".d') as its parts, quotes removed."""
    parts = []
    for m in _KEYPART.finditer(dotted):
        p = m.group(1)
        if p[0] in "\"'":
            p = p[1:-1]
        parts.append(p)
    return parts
