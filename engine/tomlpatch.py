"""Rewrite a TOML text so it parses to new data, touching only the lines that changed.

Hand-edited files keep their comments and layout, and a change to one entry of a
10,000-account domain file costs a few milliseconds instead of a full round trip
through a style-preserving parser. The result is always checked by parsing it back;
when the text has a shape this patcher does not handle (inline tables, dotted keys,
arrays of tables), tomlkit does the edit instead.
"""
from __future__ import annotations

import re
from typing import Any

import tomlkit

from .tomlsyntax import KEY_VALUE, TABLE_HEADER, split_key, tomllib

_BARE = re.compile(r"[A-Za-z0-9_-]+\Z")


class _Unsupported(Exception):
    pass


def patch(text: str, old: dict, new: dict) -> str:
    """A text that parses to `new`, made from `text` (which parses to `old`)."""
    if old == new:
        return text
    try:
        result = _Patcher(text).apply(old, new)
        if tomllib.loads(result) == new:
            return result
    except (_Unsupported, tomllib.TOMLDecodeError):
        pass
    doc = tomlkit.parse(text)
    _apply_doc(doc, old, new)
    return tomlkit.dumps(doc)


def key_text(key: str) -> str:
    return key if _BARE.match(key) else tomlkit.item(key).as_string()


def value_text(value: Any) -> str:
    if isinstance(value, dict):
        table = tomlkit.inline_table()
        table.update(value)
        return table.as_string()
    return tomlkit.item(value).as_string()


class _Patcher:
    def __init__(self, text: str):
        self.lines = text.splitlines(keepends=True)
        if self.lines and not self.lines[-1].endswith("\n"):
            self.lines[-1] += "\n"

    # -- structure --
    def _headers(self) -> list[tuple[tuple, int]]:
        out = []
        for i, line in enumerate(self.lines):
            s = line.lstrip()
            if s.startswith("["):
                if s.startswith("[["):
                    raise _Unsupported("array of tables")
                m = TABLE_HEADER.match(line)
                if not m:
                    raise _Unsupported("header")
                out.append((tuple(split_key(m.group(1))), i))
        return out

    def _span(self, path: tuple) -> tuple[int, int]:
        """(first line of the table's body, end) — root is the text before the first header."""
        headers = self._headers()
        if not path:
            return 0, headers[0][1] if headers else len(self.lines)
        for n, (p, i) in enumerate(headers):
            if p == path:
                return i + 1, headers[n + 1][1] if n + 1 < len(headers) else len(self.lines)
        raise _Unsupported(f"no header for {path}")

    def _has_header(self, path: tuple) -> bool:
        return any(p == path for p, _ in self._headers())

    def _find_key(self, path: tuple, key: str) -> tuple[int, int] | None:
        start, end = self._span(path)
        for i in range(start, end):
            m = KEY_VALUE.match(self.lines[i])
            if not m:
                continue
            parts = split_key(m.group(1))
            if parts == [key]:
                return i, self._value_end(i, end)
            if parts and parts[0] == key:
                raise _Unsupported("dotted key")
        return None

    def _value_end(self, i: int, limit: int) -> int:
        """The line after a key's value, which may span lines (arrays)."""
        for j in range(i + 1, limit + 1):
            try:
                tomllib.loads("".join(self.lines[i:j]))
                return j
            except tomllib.TOMLDecodeError:
                continue
        raise _Unsupported("value extent")

    # -- edits --
    def set_key(self, path: tuple, key: str, value: Any) -> None:
        if isinstance(value, dict):
            raise _Unsupported("inline table value")
        line = f"{key_text(key)} = {value_text(value)}\n"
        found = self._find_key(path, key)
        if found:
            i, j = found
            indent = self.lines[i][: len(self.lines[i]) - len(self.lines[i].lstrip())]
            self.lines[i:j] = [indent + line]
            return
        start, end = self._span(path)
        last = start
        for i in range(start, end):
            if KEY_VALUE.match(self.lines[i]):
                last = self._value_end(i, end)
        self.lines.insert(last, line)

    def del_key(self, path: tuple, key: str) -> None:
        found = self._find_key(path, key)
        if not found:
            raise _Unsupported("key not found")
        del self.lines[found[0]:found[1]]

    def add_table(self, path: tuple, data: dict) -> None:
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
        subtables = {k: v for k, v in data.items() if isinstance(v, dict)}
        # a table holding only tables needs no header of its own: [lists.team] defines lists
        if scalars or not subtables:
            if self.lines and self.lines[-1].strip():
                self.lines.append("\n")
            self.lines.append("[" + ".".join(key_text(k) for k in path) + "]\n")
            for k, v in scalars.items():
                self.lines.append(f"{key_text(k)} = {value_text(v)}\n")
        for k, v in subtables.items():
            self.add_table(path + (k,), v)

    def del_table(self, path: tuple) -> None:
        headers = self._headers()
        for n, (p, i) in enumerate(headers):
            if p == path:
                end = headers[n + 1][1] if n + 1 < len(headers) else len(self.lines)
                # comment lines right above the next header describe that table: keep them
                while end > i + 1 and self.lines[end - 1].lstrip().startswith("#"):
                    end -= 1
                # and the comment block right above this header describes this one
                while i > 0 and self.lines[i - 1].lstrip().startswith("#"):
                    i -= 1
                del self.lines[i:end]
                if any(p[:len(path)] == path for p, _ in self._headers()):
                    raise _Unsupported("sub-tables")
                return
        raise _Unsupported("table not found")

    def apply(self, old: dict, new: dict, path: tuple = ()) -> str:
        for key in old:
            if key not in new:
                if isinstance(old[key], dict):
                    if not self._has_header(path + (key,)) and old[key]:
                        for sub in old[key]:
                            self.apply({sub: old[key][sub]}, {}, path + (key,))
                        continue
                    self.del_table(path + (key,))
                else:
                    self.del_key(path, key)
        for key, value in new.items():
            if key not in old:
                if isinstance(value, dict):
                    self.add_table(path + (key,), value)
                else:
                    self.set_key(path, key, value)
            elif old[key] != value:
                if isinstance(value, dict) and isinstance(old[key], dict):
                    self.apply(old[key], value, path + (key,))
                else:
                    self.set_key(path, key, value)
        return "".join(self.lines)


def _apply_doc(doc, old: dict, new: dict) -> None:
    """The same change through tomlkit, for texts the patcher leaves alone."""
    for key in list(old):
        if key not in new:
            del doc[key]
    for key, value in new.items():
        if key in old and isinstance(value, dict) and isinstance(old[key], dict):
            _apply_doc(doc[key], old[key], value)
        elif key not in old or old[key] != value:
            doc[key] = value
