"""Checking a backup: the archive reads to its end, every stored file is there with
its size and SHA-256, and (for an incremental) every file it borrows from an older
backup of its chain is there too. Each damaged or missing file is named."""
from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MailError
from . import destination
from .manifest import Manifest
from .private import exposure
from .progress import SILENT, Progress


@dataclass
class VerifyReport:
    name: str
    path: Path
    checked: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    backups: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # not damage: the backup is still usable

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (f"backup {self.name}: {self.checked} files, {self.bytes / 1e6:.1f} MB verified"
                    + (f" across {len(self.backups)} backups" if len(self.backups) > 1 else ""))
        return f"backup {self.name}: {len(self.problems)} problems in {self.checked} files checked"


def _hash_file(path: str | Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _check_own(path: Path, m: Manifest, report: VerifyReport, progress: Progress) -> None:
    """Check the bytes this backup itself holds (a directory or an archive)."""
    own = m.stored_here()
    if path.is_dir():
        files = str(path / "files")
        for rel, e in sorted(own.items()):
            p = f"{files}/{rel}"
            try:
                size, digest = _hash_file(p)
            except FileNotFoundError:
                report.problems.append(f"{m.name}: missing {rel}")
                continue
            except OSError as err:
                report.problems.append(f"{m.name}: unreadable {rel} ({err.strerror})")
                continue
            report.checked += 1
            report.bytes += size
            if size != e.size or digest != e.sha256:
                report.problems.append(f"{m.name}: damaged {rel} (size {size}, expected {e.size}; checksum differs)"
                                       if size != e.size else f"{m.name}: damaged {rel} (checksum differs)")
            progress.advance(1)
        return
    prefix = f"{m.name}/files/"
    found: set[str] = set()
    try:
        # gzip.open, not tarfile's "r|gz": tarfile's own gzip stream never checks the
        # CRC-32 and length at the end, so damage that still inflates (in a header field,
        # the padding) went unseen
        with gzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
            for member in tar:
                if not member.isfile() or not member.name.startswith(prefix):
                    continue
                rel = member.name[len(prefix):]
                e = own.get(rel)
                f = tar.extractfile(member)
                h = hashlib.sha256()
                size = 0
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                    size += len(chunk)
                report.checked += 1
                report.bytes += size
                progress.advance(1)
                if e is None:
                    report.problems.append(f"{m.name}: unexpected file {rel} in the archive")
                    continue
                found.add(rel)
                if size != e.size or h.hexdigest() != e.sha256:
                    report.problems.append(f"{m.name}: damaged {rel} (checksum differs)")
            # tarfile stops at a garbled header without a word; reading to the end makes
            # gzip check its CRC and length, which catches damage anywhere in the file
            while gz.read(1 << 20):
                pass
            if set(own) - found:
                report.problems.append(f"{m.name}: archive {path.name} is damaged: "
                                       f"{len(set(own) - found)} files cannot be read from it")
    except (tarfile.TarError, OSError, EOFError, Exception) as err:   # zlib.error, truncated gzip
        report.problems.append(f"{m.name}: archive {path.name} is damaged or truncated ({err})")
    for rel in sorted(set(own) - found):
        report.problems.append(f"{m.name}: missing {rel}")


def verify_backup(path: str | os.PathLike, *, progress: Progress = SILENT, chain: bool = True) -> VerifyReport:
    path = Path(path).absolute()
    try:
        ref = destination.open_ref(path)
    except MailError as e:
        report = VerifyReport(path.name, path)
        report.problems.append(str(e))
        return report
    report = VerifyReport(ref.name, path, backups=[ref.name])
    exposed = exposure(path)
    if exposed:
        report.warnings.append(exposed)
    if ref.archive and ref.name != destination.archive_stem(path):
        report.problems.append(f"{path.name}: archive holds backup {ref.name}, not {destination.archive_stem(path)}")
    members = [ref]
    if chain and ref.manifest.parent:
        try:
            members = destination.chain_of(ref)
        except MailError as e:
            report.problems.append(str(e))
    report.backups = [r.name for r in members]
    progress.start(f"verifying {ref.name}", sum(len(r.manifest.stored_here()) for r in members))
    for r in members:
        _check_own(r.path, r.manifest, report, progress)
    # borrowed files: each must be held, with the same checksum, by a backup of the chain
    by_name = {r.name: r.manifest for r in members}
    for rel, e in sorted(ref.manifest.files.items()):
        if e.src == ref.name:
            continue
        holder = by_name.get(e.src)
        if holder is None:
            if chain:
                report.problems.append(f"{ref.name}: {rel} is in backup {e.src}, which is not in the chain")
            continue
        held = holder.files.get(e.stored_as or rel)
        if held is None or held.src != e.src or held.sha256 != e.sha256:
            report.problems.append(f"{ref.name}: {rel} should be in backup {e.src} as {e.stored_as or rel}, "
                                   f"which does not hold it")
    return report
