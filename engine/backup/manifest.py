"""The manifest of a backup (TOML): what it holds, where each file's bytes live, and
checksums to prove it. Every backup's manifest lists the *whole* tree at its time;
an incremental stores only new bytes and points at older backups for the rest.

    [backup]   name, kind (full|incremental), parent, created, source root, versions, scope
    [counts."domain/local"]   folder = messages
    [files]    "path" = {size, sha256, mtime, mode, src = backup holding the bytes, as = path there}
    dirs, renamed = [[old, new]], deleted = [...]
"""
from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field

from ..errors import MailError

FORMAT = 1
NAME = "manifest.toml"


@dataclass
class Entry:
    size: int
    sha256: str
    mtime: float
    mode: int = 0o640
    src: str = ""        # the backup whose files/ holds the bytes
    stored_as: str = ""  # the path there, when it differs (a renamed message)

    def to_inline(self) -> str:
        parts = [f"size = {self.size}", f'sha256 = "{self.sha256}"', f"mtime = {self.mtime!r}",
                 f"mode = {self.mode}", f"src = {_s(self.src)}"]
        if self.stored_as:
            parts.append(f"as = {_s(self.stored_as)}")
        return "{ " + ", ".join(parts) + " }"

    @classmethod
    def from_dict(cls, d: dict) -> "Entry":
        return cls(int(d["size"]), str(d["sha256"]), float(d["mtime"]), int(d.get("mode", 0o640)),
                   str(d.get("src", "")), str(d.get("as", "")))


def safe_path(path: str) -> bool:
    """A stored path is relative and stays inside: no '..', no leading '/', no NUL. Any
    other character is an ordinary one in a POSIX name (a folder some tool named "a\\b"
    is backed up as it is; engine/foldernames.py says which names are reported)."""
    if not path or path.startswith("/") or "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def _s(text: str) -> str:
    """A TOML basic string (JSON escapes are valid TOML escapes; DEL must be escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


@dataclass
class Manifest:
    name: str
    kind: str = "full"
    parent: str = ""
    created: float = 0.0
    source_root: str = ""
    mailctl_version: str = ""
    hostname: str = ""
    scope: dict = field(default_factory=dict)        # domain / account / queue
    files: dict[str, Entry] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    renamed: list[list[str]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    format: int = FORMAT

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.files.values())

    @property
    def messages(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    def stored_here(self) -> dict[str, Entry]:
        """Entries whose bytes this backup itself holds."""
        return {p: e for p, e in self.files.items() if e.src == self.name}

    def render(self) -> str:
        out = ["[backup]",
               f"format = {self.format}",
               f"name = {_s(self.name)}",
               f"kind = {_s(self.kind)}",
               f"parent = {_s(self.parent)}",
               f"created = {self.created!r}",
               f"source_root = {_s(self.source_root)}",
               f"mailctl_version = {_s(self.mailctl_version)}",
               f"hostname = {_s(self.hostname)}",
               f"files = {len(self.files)}",
               f"bytes = {self.total_bytes}",
               f"messages = {self.messages}",
               "", "[backup.scope]"]
        for k, v in sorted(self.scope.items()):
            out.append(f"{k} = {_s(v) if isinstance(v, str) else str(v).lower()}")
        out.append("")
        for acct, folders in sorted(self.counts.items()):
            out.append(f"[counts.{_s(acct)}]")
            for folder, n in sorted(folders.items()):
                out.append(f"{_s(folder)} = {n}")
            out.append("")
        out.append("[tree]")
        out.append("dirs = [" + ", ".join(_s(d) for d in sorted(self.dirs)) + "]")
        out.append("renamed = [" + ", ".join(f"[{_s(a)}, {_s(b)}]" for a, b in self.renamed) + "]")
        out.append("deleted = [" + ", ".join(_s(d) for d in sorted(self.deleted)) + "]")
        out.append("")
        out.append("[files]")
        for path in sorted(self.files):
            out.append(f"{_s(path)} = {self.files[path].to_inline()}")
        return "\n".join(out) + "\n"

    @classmethod
    def parse(cls, text: str | bytes, where: str = NAME) -> "Manifest":
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            data = _fast_parse(text)
            b = data["backup"]
            tree = data.get("tree", {})
            m = cls(name=b["name"], kind=b["kind"], parent=b.get("parent", ""),
                       created=float(b["created"]), source_root=b.get("source_root", ""),
                       mailctl_version=b.get("mailctl_version", ""), hostname=b.get("hostname", ""),
                       scope=dict(b.get("scope", {})),
                       files={p: Entry.from_dict(d) for p, d in data.get("files", {}).items()},
                       dirs=list(tree.get("dirs", [])), renamed=[list(x) for x in tree.get("renamed", [])],
                       deleted=list(tree.get("deleted", [])),
                       counts={a: dict(f) for a, f in data.get("counts", {}).items()},
                       format=int(b.get("format", 1)))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
            raise MailError(f"{where}: damaged backup manifest ({e}); this backup cannot be used") from None
        for path in [*m.files, *m.dirs, *m.deleted, *(e.stored_as for e in m.files.values() if e.stored_as),
                     *(p for pair in m.renamed for p in pair)]:
            if not safe_path(path):
                raise MailError(f"{where}: unsafe path {path!r} in the manifest (it would leave the root); "
                                f"this backup cannot be used")
        for name in [m.name, m.parent, *(e.src for e in m.files.values())]:
            if name and not safe_path(name) or "/" in name:
                raise MailError(f"{where}: unsafe backup name {name!r} in the manifest")
        return m


# The [files] table holds one line per file (tens of thousands); tomllib takes seconds
# for that, so lines in exactly the form render() writes are read with one regex. Any
# other form (a hand edit) falls back to tomllib, which is the definition.
_LINE = re.compile(r'^("(?:[^"\\]|\\.)*") = \{ size = (\d+), sha256 = "([0-9a-f]{64})", mtime = ([-0-9.e+]+), '
                   r'mode = (\d+), src = ("(?:[^"\\]|\\.)*")(?:, as = ("(?:[^"\\]|\\.)*"))? \}$')


def _fast_parse(text: str) -> dict:
    head, sep, body = text.partition("\n[files]\n")
    if not sep:
        return tomllib.loads(text)
    files = {}
    for line in body.splitlines():
        if not line:
            continue
        m = _LINE.match(line)
        if m is None:
            return tomllib.loads(text)
        d = {"size": int(m[2]), "sha256": m[3], "mtime": float(m[4]), "mode": int(m[5]), "src": json.loads(m[6])}
        if m[7]:
            d["as"] = json.loads(m[7])
        files[json.loads(m[1])] = d
    data = tomllib.loads(head)
    data["files"] = files
    return data
