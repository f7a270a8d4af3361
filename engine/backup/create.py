"""Making a backup of a live root (issue 6).

The server keeps accepting and changing mail meanwhile, so nothing here locks the
store. It relies on the store's invariants instead: every file is replaced by an
atomic rename, message bytes never change, and a message keeps its base name when
its flags change. A message that is renamed while we link it is looked up again by
base name in new/ and cur/; a folder is listed twice so a rename racing the
directory scan cannot hide a message, and base names make sure none is taken twice.

Message files are hard-linked into the snapshot when it is on the same filesystem
(Mox does the same), everything else is copied. The snapshot is built under a
`.partial` name and renamed into place only once its manifest is written and every
checksum verified, so a backup that exists is complete.
"""
from __future__ import annotations

import errno
import shutil
import hashlib
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import foldernames, mutf7, nofollow
from ..errors import InvalidInput, MailError
from ..locks import FileLock
from ..root import Root, fsync_dir
from . import destination
from .mailfiles import MESSAGE_DIRS, base_name, list_messages
from .filecopy import copy_new, sync_filesystem
from .manifest import NAME as MANIFEST, Entry, Manifest
from .private import FILE_MODE, OTHERS, make_private_dir, write_private
from .progress import SILENT, Progress

SKIP_TOP = {"run", "log", "tmp"}                # runtime state, rotated logs, scanners' files
LATE_FILES = {"dovecot-keywords"}               # read after the messages (it only grows)
LINK_FALLBACK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP}
RELOCATE_TRIES = 5


def default_destination(root: Root) -> Path:
    return root.path.parent / f"{root.path.name}-backups"


def mailctl_version() -> str:
    try:
        from importlib.metadata import version
        return version("mailctl")
    except Exception:
        return "unknown"


def _skip_file(name: str) -> bool:
    return (name.endswith(".lock") or name.startswith("dovecot.index") or name.startswith("dovecot.list.index")
            or (name.startswith(".") and name.endswith(".tmp")) or name == "dovecot-uidlist.tmp")


def folder_display(folder_rel: str) -> str:
    """'mail/d/l' -> INBOX, 'mail/d/l/.A.B' -> A/B (decoded from modified UTF-7)."""
    last = folder_rel.rsplit("/", 1)[-1]
    if folder_rel.count("/") == 2 or not last.startswith("."):
        return "INBOX"
    name = last[1:].replace(".", "/")
    try:
        return mutf7.decode(name)
    except Exception:
        return name


def account_key(path: str) -> str | None:
    parts = path.split("/")
    return f"{parts[1]}/{parts[2]}" if len(parts) >= 3 and parts[0] == "mail" else None


@dataclass
class BackupResult:
    name: str
    path: Path
    kind: str
    files: int
    bytes: int
    messages: int
    stored_files: int
    stored_bytes: int
    seconds: float
    verified: bool
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        mb = self.bytes / 1e6
        new = f", {self.stored_files} files / {self.stored_bytes / 1e6:.1f} MB new" if self.kind == "incremental" else ""
        state = "verified" if self.verified else "NOT VERIFIED"
        return (f"backup {self.name} ({self.kind}): {self.messages} messages, {self.files} files, "
                f"{mb:.1f} MB{new} in {self.seconds:.1f}s, {state} -> {self.path}")


class _Builder:
    def __init__(self, root: Root, work: Path, manifest: Manifest, parent: Manifest | None,
                 progress: Progress):
        self.root = root
        self.work = work
        self.files_dir = work / "files"
        self.m = manifest
        self.parent = parent
        self.progress = progress
        self.made_dirs: set[Path] = set()
        self.made_str: set[str] = set()
        self.root_str = str(root.path)
        self.files_str = str(self.files_dir)
        self.stored_files = 0
        self.stored_bytes = 0
        self.notes: list[str] = []
        # incremental: (folder, base) -> (path, entry) of the previous backup
        self.parent_msgs: dict[tuple[str, str], tuple[str, Entry]] = {}
        if parent is not None:
            for path, e in parent.files.items():
                folder, sub, name = _split(path)
                if sub:
                    self.parent_msgs[(folder, base_name(name))] = (path, e)

    # -- writing into the snapshot --------------------------------------------
    def _dir_for(self, rel: str) -> Path:
        d = (self.files_dir / rel).parent
        if d not in self.made_dirs:
            make_private_dir(d)
            self.made_dirs.add(d)
        return d

    def copy_file(self, rel: str, st: os.stat_result | None = None) -> bool:
        """Copy an ordinary file (read once: it is replaced atomically, never rewritten)."""
        src = self.root.path / rel
        try:
            with os.fdopen(nofollow.open_file(src), "rb") as f:    # a link is not followed
                data = f.read()
                st = os.fstat(f.fileno())
        except (FileNotFoundError, IsADirectoryError):
            return False          # removed meanwhile: it is not part of the tree any more
        except PermissionError as e:
            raise MailError(f"{src}: cannot read ({e.strerror}); run the backup as the mail root's owner") from None
        digest = hashlib.sha256(data).hexdigest()
        mode = st.st_mode & 0o7777
        prev = self.parent.files.get(rel) if self.parent else None
        if prev is not None and prev.sha256 == digest and prev.size == len(data):
            self.m.files[rel] = Entry(len(data), digest, st.st_mtime, mode, prev.src, prev.stored_as)
            return True
        dst = self._dir_for(rel) / Path(rel).name
        # 0600 whatever the source's mode (kept in the manifest for restore): a backup is secret
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)   # no O_TRUNC (ext4 flush on close)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.utime(fd, (st.st_atime, st.st_mtime))
        finally:
            os.close(fd)
        self.m.files[rel] = Entry(len(data), digest, st.st_mtime, mode, self.m.name)
        self.stored_files += 1
        self.stored_bytes += len(data)
        self.progress.advance(1)
        return True

    def take_message(self, folder: str, sub: str, name: str) -> bool:
        """Link (or copy) one message; follow it by base name if it is renamed meanwhile."""
        base = base_name(name)
        for _ in range(RELOCATE_TRIES):
            rel = f"{folder}/{sub}/{name}"
            try:
                return self._store_message(rel, folder, base)
            except FileNotFoundError:
                pass
            where = list_messages(self.root.path / folder).get(base)
            if where is None:
                return False      # expunged during the backup
            sub, name = where
        return False

    def _store_message(self, rel: str, folder: str, base: str) -> bool:
        # plain strings here: pathlib cost more than the link and the hash for 20k small files
        src = f"{self.root_str}/{rel}"
        prev = self.parent_msgs.get((folder, base))
        if prev is not None:
            st = os.stat(src)
            ppath, pe = prev
            if st.st_size == pe.size:
                held_as = pe.stored_as or ppath          # where the older backup keeps the bytes
                self.m.files[rel] = Entry(pe.size, pe.sha256, st.st_mtime, st.st_mode & 0o7777, pe.src,
                                          held_as if held_as != rel else "")
                if ppath != rel:
                    self.m.renamed.append([ppath, rel])
                self.progress.advance(1)
                return True
        dst = f"{self.files_str}/{rel}"
        dst_dir = dst.rpartition("/")[0]
        if dst_dir not in self.made_str:
            make_private_dir(dst_dir)
            self.made_str.add(dst_dir)
        try:
            os.link(src, dst)
        except FileExistsError:
            pass                  # taken already under this name: hash what is there
        except OSError as e:
            if e.errno not in LINK_FALLBACK:
                raise
            _copy_preserving(src, dst)
        h = hashlib.sha256()
        with os.fdopen(nofollow.open_file(dst), "rb") as f:     # a link made in its place is not followed
            st = os.fstat(f.fileno())
            if st.st_mode & OTHERS:
                # left open by another tool: a link would share that mode, so copy it private
                os.unlink(dst)
                _copy_preserving(src, dst)
                return self._store_message(rel, folder, base)
            while chunk := f.read(1 << 20):
                h.update(chunk)
        self.m.files[rel] = Entry(st.st_size, h.hexdigest(), st.st_mtime, st.st_mode & 0o7777, self.m.name)
        self.stored_files += 1
        self.stored_bytes += st.st_size
        self.progress.advance(1)
        return True


def _copy_preserving(src: Path, dst: Path) -> None:
    copy_new(src, dst, FILE_MODE, os.stat(src).st_mtime)     # the source's mode is in the manifest


def _split(path: str) -> tuple[str, str, str]:
    folder, _, name = path.rpartition("/")
    folder, _, sub = folder.rpartition("/")
    if sub in MESSAGE_DIRS and path.startswith(("mail/", "removed/")) and folder.count("/") >= 2:
        return folder, sub, name
    return "", "", ""


def _scope_filter(domain: str | None, account: tuple[str, str] | None):
    """Which top-level paths a scoped backup takes."""
    if account:
        d, local = account
        return lambda rel: (rel == "domains" or rel == f"domains/{d}.toml" or rel == "mail" or rel == f"mail/{d}"
                            or rel.startswith(f"mail/{d}/{local}/") or rel == f"mail/{d}/{local}")
    if domain:
        d = domain
        return lambda rel: (rel in ("domains", "mail", "dkim") or rel == f"domains/{d}.toml"
                            or rel == f"mail/{d}" or rel.startswith(f"mail/{d}/")
                            or (rel.startswith("dkim/") and rel[5:].startswith(d + ".")))
    return lambda rel: True


def _walk(root: Root, keep, exclude: set[Path], with_queue: bool):
    """Yield ('dir', rel), ('file', rel), ('late', rel) and ('folder', rel) for message folders."""
    top = root.path
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        abs_dir = top / rel_dir if rel_dir else top
        try:
            entries = list(os.scandir(abs_dir))
        except FileNotFoundError:
            continue
        names = {e.name for e in entries}
        is_folder = (rel_dir.startswith(("mail/", "removed/")) and rel_dir.count("/") >= 2
                     and "cur" in names and "new" in names)
        if is_folder:
            yield "folder", rel_dir
        for e in sorted(entries, key=lambda e: e.name):
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if not keep(rel):
                continue
            if e.is_dir(follow_symlinks=False):
                if not rel_dir and e.name in SKIP_TOP:
                    continue
                if not rel_dir and e.name == "queue" and not with_queue:
                    continue
                if Path(e.path) in exclude:
                    continue
                yield "dir", rel
                if is_folder and e.name in ("cur", "new", "tmp"):
                    continue         # messages are taken per folder; tmp/ holds only unfinished writes
                stack.append(rel)
            elif e.is_file(follow_symlinks=False):
                if _skip_file(e.name):
                    continue
                yield ("late" if e.name in LATE_FILES else "file"), rel


def create_backup(root: Root, dest: str | os.PathLike | None = None, *, incremental: bool = False,
                  domain: str | None = None, account: str | None = None, queue: bool = True,
                  archive: bool | None = None, progress: Progress = SILENT,
                  clock=time.time) -> BackupResult:
    from .verify import verify_backup
    started = time.monotonic()
    root.require()
    acct = None
    if account:
        from ..addresses import parse_address
        a = parse_address(account)
        acct = (a.domain, a.local)
        domain = None
        queue = False
    elif domain:
        from ..addresses import normalize_domain
        domain = normalize_domain(domain)
        queue = False
    if (domain and not root.domain_file(domain).exists()) or (acct and not root.domain_file(acct[0]).exists()):
        raise InvalidInput(f"domain {domain or acct[0]} is not in {root.path}/domains; see 'mailctl domain list'")

    dest_path = Path(dest).absolute() if dest else default_destination(root)
    archive_path = None
    if destination.is_archive_path(dest_path):
        archive_path, dest_path = dest_path, dest_path.parent
    elif archive:
        archive_path = None      # named below once we know the backup's name
    make_private_dir(dest_path)
    lock = FileLock(dest_path / ".backup.lock", timeout=5)
    with lock:
        parent_ref = None
        notes: list[str] = []
        if incremental:
            refs, _ = destination.list_backups(dest_path)
            scope = {"domain": domain or "", "account": account or ""}
            refs = [r for r in refs if {k: r.manifest.scope.get(k, "") for k in scope} == scope]
            parent_ref = refs[-1] if refs else None
            if parent_ref is None:
                notes.append("no earlier backup in the destination: made a full backup")
        now = clock()
        kind = "incremental" if parent_ref else "full"
        if archive_path is not None:
            name = destination.archive_stem(archive_path)
        else:
            name = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1e6) % 1000000:06d}Z-{kind[:4]}"
            if archive:
                archive_path = dest_path / f"{name}.tar.gz"
        final = archive_path or dest_path / name
        if final.exists():
            raise MailError(f"{final} already exists; choose another --to")
        # <dest>/.<name>.partial/<name>/: the inner name is the one the archive stores
        holder = dest_path / f".{name}{destination.PARTIAL}"
        if holder.exists():
            shutil.rmtree(holder)
        work = holder / name
        make_private_dir(work / "files")
        m = Manifest(name=name, kind=kind, parent=parent_ref.name if parent_ref else "", created=now,
                     source_root=str(root.path), mailctl_version=mailctl_version(),
                     hostname=socket.gethostname(),
                     scope={"domain": domain or "", "account": account or "", "queue": queue})
        try:
            b = _Builder(root, work, m, parent_ref.manifest if parent_ref else None, progress)
            _fill(root, b, dest_path, domain, acct, queue, archive_path)
            notes += b.notes
            if parent_ref:
                gone_from = {old for old, _ in m.renamed}
                m.deleted = sorted(p for p in parent_ref.manifest.files if p not in m.files and p not in gone_from)
            write_private(work / MANIFEST, m.render().encode("utf-8"))
            sync_filesystem(work)
            if archive_path is not None:
                tmp_archive = holder / (name + ".tar.gz")
                destination.pack(holder, name, MANIFEST, tmp_archive)
                os.chmod(tmp_archive, FILE_MODE)       # tar made it with the umask's mode
                report = verify_backup(tmp_archive, progress=progress, chain=False)
                if report.ok:
                    with open(tmp_archive, "rb") as f:
                        os.fsync(f.fileno())
                    os.rename(tmp_archive, archive_path)
                shutil.rmtree(holder)
            else:
                report = verify_backup(work, progress=progress, chain=False)
                if report.ok:
                    os.rename(work, final)
                shutil.rmtree(holder)
            fsync_dir(dest_path)
        except BaseException:
            shutil.rmtree(holder, ignore_errors=True)
            raise
        if not report.ok:
            raise MailError(f"backup {name} failed verification: {report.problems[0]}")
        return BackupResult(name, final, kind, len(m.files), m.total_bytes, m.messages, b.stored_files,
                            b.stored_bytes, time.monotonic() - started, True, notes)


def _fill(root: Root, b: _Builder, dest: Path, domain, acct, queue: bool, archive_path) -> None:
    keep = _scope_filter(domain, acct)
    exclude = {dest}
    folders: list[str] = []
    late: list[str] = []
    envelopes: list[str] = []
    b.progress.start("backing up", None)
    for kind, rel in _walk(root, keep, exclude, queue):
        if kind == "dir":
            b.m.dirs.append(rel)
        elif kind == "folder":
            folders.append(rel)
        elif kind == "late":
            late.append(rel)
        elif rel.startswith("queue/"):
            envelopes.append(rel)
        else:
            b.copy_file(rel)
    # Messages: two listings per folder; base names make sure none is taken twice.
    for folder in folders:
        problem = foldernames.dirname_problem(folder.rsplit("/", 1)[-1]) if folder.count("/") > 2 else None
        if problem:
            b.notes.append(f"{folder}: {problem}; backed up all the same (rename the folder)")
        seen: set[str] = set()
        for _ in range(2):
            for base, (sub, name) in list_messages(root.path / folder).items():
                if base not in seen and b.take_message(folder, sub, name):
                    seen.add(base)
        key = account_key(folder)
        if key and folder.startswith("mail/"):
            b.m.counts.setdefault(key, {})[folder_display(folder)] = len(seen)
    for rel in late:
        b.copy_file(rel)
    _take_queue(root, b, envelopes)


def _take_queue(root: Root, b: _Builder, rels: list[str]) -> None:
    """Queue items whole or not at all: body and envelope together, the envelope
    followed through state changes (renames between queue/<state>/)."""
    bodies = {r for r in rels if r.startswith("queue/messages/")}
    envs = [r for r in rels if r not in bodies]
    states = ("active", "deferred", "hold")
    for env in envs:
        parts = env.split("/")
        if len(parts) != 3 or parts[1] not in states or not parts[2].endswith(".toml"):
            b.copy_file(env)
            continue
        qid = parts[2][:-5]
        body = f"queue/messages/{qid}.eml"
        if not b.copy_file(body):
            continue             # delivered meanwhile
        bodies.discard(body)
        for state in (parts[1], *states):
            if b.copy_file(f"queue/{state}/{qid}.toml"):
                break
        else:
            # delivered meanwhile: drop the orphan body
            b.m.files.pop(body, None)
    # bodies left in `bodies` have no envelope: the queue sweeps them at start, we skip them
