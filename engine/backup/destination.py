"""Where backups live: a destination directory holding directory snapshots
(<name>/manifest.toml + <name>/files/...) and archives (<name>.tar.gz with
<name>/manifest.toml as its first member). A chain of incrementals refers to its
members by name, so a chain lives in one destination."""
from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import MailError, NotFound
from .. import storage_errors
from ..storage_errors import StorageError
from .manifest import NAME as MANIFEST, Manifest

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
PARTIAL = ".partial"


def is_archive_path(path: str | os.PathLike) -> bool:
    return str(path).endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class BackupRef:
    name: str
    path: Path
    archive: bool
    manifest: Manifest

    @property
    def created(self) -> float:
        return self.manifest.created


_CACHE: dict[str, tuple[tuple, Manifest]] = {}


def read_manifest(path: Path) -> Manifest:
    """The manifest of a backup directory or archive (parsed once per version of the file)."""
    path = Path(path)
    try:
        st = os.stat(path / MANIFEST if path.is_dir() else path)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None
    cached = _CACHE.get(str(path))
    if stamp is not None and cached is not None and cached[0] == stamp:
        return cached[1]
    m = _read_manifest(path)
    if stamp is not None:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[str(path)] = (stamp, m)
    return m


def _read_manifest(path: Path) -> Manifest:
    if path.is_dir():
        try:
            return Manifest.parse((path / MANIFEST).read_bytes(), str(path / MANIFEST))
        except FileNotFoundError:
            raise MailError(f"{path}: not a backup (no {MANIFEST}); give a backup directory or archive") from None
    if not path.exists():
        raise NotFound(f"{path}: no such backup; see 'mailctl backup list'")
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith("/" + MANIFEST) and member.name.count("/") == 1:
                    f = tar.extractfile(member)
                    return Manifest.parse(f.read(), f"{path}:{member.name}")
                break
    except (tarfile.TarError, OSError, EOFError) as e:
        raise MailError(f"{path}: damaged backup archive ({e}); run 'mailctl backup verify'") from None
    raise MailError(f"{path}: archive has no manifest first; not a mailctl backup")


def open_ref(path: Path) -> BackupRef:
    path = Path(path).absolute()
    m = read_manifest(path)
    return BackupRef(m.name, path, not path.is_dir(), m)


def list_backups(dest: Path) -> tuple[list[BackupRef], list[str]]:
    """Complete backups in dest, oldest first, and one line per unreadable entry."""
    refs, problems = [], []
    try:
        entries = sorted(os.scandir(dest), key=lambda e: e.name)
    except FileNotFoundError:
        return [], []
    except OSError as e:
        raise MailError(f"{dest}: cannot list backups: {e.strerror}") from None
    for e in entries:
        if e.name.startswith(".") or e.name.endswith(PARTIAL):
            continue
        p = Path(e.path)
        if e.is_dir() and (p / MANIFEST).exists() or is_archive_path(p) and e.is_file():
            try:
                refs.append(open_ref(p))
            except MailError as err:
                problems.append(str(err))
    refs.sort(key=lambda r: (r.created, r.name))
    return refs, problems


def find_in(dest: Path, name: str) -> BackupRef | None:
    for candidate in (dest / name, *(dest / (name + s) for s in ARCHIVE_SUFFIXES)):
        if candidate.exists():
            try:
                ref = open_ref(candidate)
            except MailError:
                continue
            if ref.name == name:
                return ref
    refs, _ = list_backups(dest)
    return next((r for r in refs if r.name == name), None)


def chain_of(ref: BackupRef) -> list[BackupRef]:
    """The backup and its ancestors back to the full one, oldest first."""
    chain = [ref]
    seen = {ref.name}
    while chain[0].manifest.parent:
        parent = chain[0].manifest.parent
        found = find_in(ref.path.parent, parent)
        if found is None:
            raise NotFound(f"{ref.name}: the backup it builds on ({parent}) is missing from {ref.path.parent}; "
                           f"the chain cannot be restored past it")
        if found.name in seen:
            raise MailError(f"{ref.name}: backup chain loops at {parent}")
        seen.add(found.name)
        chain.insert(0, found)
    return chain


class Blobs:
    """Read access to the stored bytes of a chain: directories directly, archives
    unpacked once into a scratch directory (removed by close())."""

    def __init__(self, chain: list[BackupRef], scratch_parent: Path | None = None):
        self.refs = {r.name: r for r in chain}
        self.scratch_parent = scratch_parent
        self._unpacked: dict[str, Path] = {}
        self._scratch: Path | None = None

    def files_dir(self, name: str) -> Path:
        ref = self.refs.get(name)
        if ref is None:
            raise NotFound(f"backup {name} is not part of this chain")
        if not ref.archive:
            return ref.path / "files"
        if name not in self._unpacked:
            if self._scratch is None:
                parent = self.scratch_parent
                if parent is not None:
                    parent.mkdir(parents=True, exist_ok=True)
                self._scratch = Path(tempfile.mkdtemp(prefix=".mailctl-unpack-", dir=parent))
            target = self._scratch / name
            target.mkdir()
            unpack(ref.path, target)
            self._unpacked[name] = target / ref.name / "files"
        return self._unpacked[name]

    def path(self, name: str, stored: str) -> Path:
        return self.files_dir(name) / stored

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> "Blobs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def unpack(archive: Path, target: Path) -> None:
    """Unpack an archive (GNU tar when present: several times faster than tarfile)."""
    import subprocess
    tar_bin = shutil.which("tar")
    if tar_bin:
        proc = subprocess.run([tar_bin, "-xzf", str(archive), "-C", str(target), "--no-same-owner",
                               "--delay-directory-restore"], capture_output=True)
        if proc.returncode == 0:
            return
        raise MailError(f"{archive}: damaged backup archive ({proc.stderr.decode(errors='replace').strip()[:200]}); "
                        f"run 'mailctl backup verify'")
    try:
        with tarfile.open(archive, "r|gz") as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise MailError(f"{archive}: damaged backup archive ({e}); run 'mailctl backup verify'") from None


def pack(work_parent: Path, name: str, manifest_name: str, archive: Path) -> None:
    """Write <name>/manifest.toml first, then <name>/files/, gzip-compressed."""
    import subprocess
    tar_bin = shutil.which("tar")
    if tar_bin:
        proc = subprocess.run([tar_bin, "-C", str(work_parent), "-czf", str(archive), "--format=pax",
                               f"{name}/{manifest_name}", f"{name}/files"], capture_output=True,
                              env={**os.environ, "LC_ALL": "C"})     # its errors in English
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace")
            for code in sorted(storage_errors.FULL | storage_errors.READ_ONLY):
                if os.strerror(code) in stderr:
                    raise StorageError(code, archive)
            raise MailError(f"{archive}: cannot write archive: {stderr.strip()[:200]}")
        return
    with tarfile.open(archive, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
        tar.add(work_parent / name / manifest_name, arcname=f"{name}/{manifest_name}")
        tar.add(work_parent / name / "files", arcname=f"{name}/files")


def remove_backup(ref: BackupRef) -> None:
    if ref.archive:
        with contextlib.suppress(FileNotFoundError):
            ref.path.unlink()
    else:
        # rename first, so a half-removed backup never looks complete
        doomed = ref.path.with_name(f".{ref.path.name}.removing")
        os.rename(ref.path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
