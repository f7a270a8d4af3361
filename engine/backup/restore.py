"""Restoring a backup (or a chain of incrementals) into a root.

Two ways, chosen by the target:
- a fresh root (no mailctl.toml; nothing there): the tree of the backup is written
  exactly: every file with its bytes, mode and mtime (mtime = IMAP INTERNALDATE),
  uidlists included, so clients keep their UIDs.
- a live root, or one account / domain: a merge. A message already there (same base
  name in new/ or cur/, else the same content) is left alone, so newer flags and
  newer mail always win; missing messages are added once. Missing files are written,
  existing ones kept. UIDs of added messages are assigned by the store; when they
  could clash with UIDs clients saw before (same UIDVALIDITY), UIDVALIDITY is bumped
  so IMAP clients resync cleanly.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInput, MailError
from ..root import Root, fsync_dir
from . import destination
from .create import account_key
from .filecopy import copy_new, sync_filesystem
from .mailfiles import UidList, base_name, flags_of, list_messages, read_keywords
from .manifest import Entry, Manifest
from .progress import SILENT, Progress

MAILDIR_DIRS = ("cur", "new", "tmp")


@dataclass
class RestoreResult:
    backup: str
    target: Path
    mode: str                       # fresh | merge
    dry_run: bool = False
    files_written: int = 0
    bytes_written: int = 0
    messages_added: int = 0
    messages_present: int = 0       # same base name already there
    duplicates: int = 0             # same content already there under another name
    files_kept: int = 0             # existing non-mail files left as they are
    accounts_added: list[str] = field(default_factory=list)
    uidvalidity_bumped: list[str] = field(default_factory=list)
    skipped_queue: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        what = "would restore" if self.dry_run else "restored"
        s = (f"{what} {self.backup} into {self.target} ({self.mode}): {self.messages_added} messages added, "
             f"{self.messages_present + self.duplicates} already there, {self.files_written} files written")
        if self.files_kept:
            s += f", {self.files_kept} existing files kept"
        if self.accounts_added:
            s += f", accounts added: {', '.join(self.accounts_added)}"
        if self.uidvalidity_bumped:
            s += f", UIDVALIDITY bumped in {len(self.uidvalidity_bumped)} folders"
        if self.skipped_queue:
            s += f", {self.skipped_queue} queue files not restored into a live root"
        return s + f" in {self.seconds:.1f}s"


def _select(m: Manifest, domain: str | None, account: tuple[str, str] | None):
    if account:
        d, local = account
        prefix = f"mail/{d}/{local}/"
        return lambda p: p.startswith(prefix)
    if domain:
        return lambda p: p.startswith(f"mail/{domain}/") or (p.startswith("dkim/") and p[5:].startswith(domain + "."))
    return lambda p: True


def restore_backup(backup: str | os.PathLike, target: Root, *, domain: str | None = None,
                   account: str | None = None, dry_run: bool = False, progress: Progress = SILENT,
                   verify_first: bool = True) -> RestoreResult:
    started = time.monotonic()
    ref = destination.open_ref(Path(backup))
    chain = destination.chain_of(ref)
    m = ref.manifest
    acct = None
    if account:
        from ..addresses import parse_address
        a = parse_address(account)
        acct = (a.domain, a.local)
        if not any(p.startswith(f"mail/{a.domain}/{a.local}/") for p in m.files) and \
                f"mail/{a.domain}/{a.local}" not in m.dirs:
            raise InvalidInput(f"{a}: no such mailbox in backup {m.name}; see its manifest counts")
    elif domain:
        from ..addresses import normalize_domain
        domain = normalize_domain(domain)
        if not any(p.startswith(f"mail/{domain}/") or p == f"domains/{domain}.toml" for p in m.files):
            raise InvalidInput(f"domain {domain}: not in backup {m.name}")
    if verify_first and not dry_run:
        from .verify import verify_backup
        report = verify_backup(ref.path, progress=progress)
        if not report.ok:
            raise MailError(f"backup {m.name} is damaged, nothing restored: {report.problems[0]} "
                            f"(and {len(report.problems) - 1} more; see 'mailctl backup verify')"
                            if len(report.problems) > 1 else
                            f"backup {m.name} is damaged, nothing restored: {report.problems[0]}")
    if (acct or domain) and not target.exists():
        raise InvalidInput(f"{target.path}: not a mail root; restoring one account or domain needs an existing "
                           f"root (restore the whole backup into a new one instead)")
    scope = m.scope.get("account") or m.scope.get("domain")
    if scope and not target.exists():
        raise InvalidInput(f"backup {m.name} holds only {scope}, not a whole root; restore it into an existing "
                           f"root (--to ROOT)")
    if not target.exists() and _has_content(target.path):
        raise InvalidInput(f"{target.path}: not empty and not a mail root; restore into an empty directory "
                           f"or an existing root")
    fresh = not target.exists() and not acct and not domain
    result = RestoreResult(m.name, target.path, "fresh" if fresh else "merge", dry_run)
    scratch_parent = target.path.parent if target.path.parent.exists() else None
    with destination.Blobs(chain, scratch_parent) as blobs:
        if fresh:
            _restore_fresh(m, blobs, target, result, progress, dry_run)
        else:
            _restore_merge(m, blobs, target, result, progress, dry_run, domain, acct)
    result.seconds = time.monotonic() - started
    return result


def _has_content(path: Path) -> bool:
    try:
        return any(os.scandir(path))
    except FileNotFoundError:
        return False


def _blob(blobs: destination.Blobs, rel: str, e: Entry) -> Path:
    return blobs.path(e.src, e.stored_as or rel)


def _write_copy(src: str | Path, dst: str | Path, e: Entry, move: bool = False) -> None:
    """Write dst as a new file with the entry's bytes, mode and mtime."""
    if move:
        try:
            os.rename(src, dst)
            os.chmod(dst, e.mode or 0o600)
            os.utime(dst, (e.mtime, e.mtime))
            return
        except OSError:
            pass
    copy_new(src, dst, e.mode or 0o600, e.mtime)


def _restore_fresh(m: Manifest, blobs: destination.Blobs, target: Root, result: RestoreResult,
                   progress: Progress, dry_run: bool) -> None:
    progress.start(f"restoring {m.name}", len(m.files))
    if dry_run:
        result.files_written = len(m.files)
        result.bytes_written = m.total_bytes
        result.messages_added = m.messages
        return
    target.path.mkdir(parents=True, exist_ok=True)
    for d in sorted(m.dirs):
        mode = 0o700 if d.startswith(("mail/", "removed/")) else 0o750
        (target.path / d).mkdir(mode=mode, parents=True, exist_ok=True)
    made: set[str] = set()
    moved: set[str] = set()
    archived = {r.name for r in blobs.refs.values() if r.archive}
    files_dirs = {name: str(blobs.files_dir(name)) for name in {e.src for e in m.files.values()}}
    top = str(target.path)
    # the config file last: a root exists (for mailctl) only once it is complete
    order = sorted(m.files, key=lambda p: (p == "mailctl.toml", p))
    for rel in order:
        e = m.files[rel]
        dst = f"{top}/{rel}"
        parent = dst.rpartition("/")[0]
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        src = f"{files_dirs[e.src]}/{e.stored_as or rel}"
        move = e.src in archived and src not in moved     # unpacked scratch copies can simply move
        _write_copy(src, dst, e, move=move)
        if move:
            moved.add(src)
        result.files_written += 1
        result.bytes_written += e.size
        if rel.startswith("mail/") and rel.count("/") >= 4 and rel.split("/")[-2] in ("cur", "new"):
            result.messages_added += 1
        progress.advance(1)
    sync_filesystem(target.path)


def _restore_merge(m: Manifest, blobs: destination.Blobs, target: Root, result: RestoreResult,
                   progress: Progress, dry_run: bool, domain: str | None, acct) -> None:
    selected = _select(m, domain, acct)
    folders: dict[str, list[tuple[str, str, str, Entry]]] = {}
    others: list[tuple[str, Entry]] = []
    for rel, e in m.files.items():
        if not selected(rel):
            continue
        folder, _, name = rel.rpartition("/")
        folder, _, sub = folder.rpartition("/")
        if sub in ("cur", "new") and rel.startswith(("mail/", "removed/")) and folder.count("/") >= 2:
            folders.setdefault(folder, []).append((rel, sub, name, e))
        else:
            others.append((rel, e))
    # folders that exist in the backup but are empty must come back too
    for d in m.dirs:
        if selected(d + "/") and d.rsplit("/", 1)[-1] == "cur":
            folders.setdefault(d[: -len("/cur")], [])
    progress.start(f"restoring {m.name}", len(m.files))
    live_root = target.exists()
    existed = {f: (target.path / f / "cur").is_dir() for f in folders}
    touched_accounts: set[str] = set()
    for folder, entries in sorted(folders.items()):
        _merge_folder(m, blobs, target, folder, entries, existed[folder], result, dry_run)
        key = account_key(folder)
        if key:
            touched_accounts.add(key)
        progress.advance(len(entries))
    for rel, e in sorted(others):
        dst = target.path / rel
        if rel.startswith("queue/") and live_root:
            result.skipped_queue += 1          # re-sending mail delivered since would duplicate it
            continue
        if dst.exists():
            result.files_kept += 1
            continue
        parts = rel.split("/")
        if parts[-1] in ("dovecot-uidlist", "dovecot-keywords") and existed.get("/".join(parts[:-1])):
            continue
        if not dry_run:
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.restore.tmp")
            if tmp.exists():
                tmp.unlink()
            _write_copy(_blob(blobs, rel, e), tmp, e)
            os.replace(tmp, dst)
        result.files_written += 1
        result.bytes_written += e.size
        progress.advance(1)
    if not live_root and not dry_run:
        for d in sorted(m.dirs):
            if selected(d + "/") and not d.startswith(("queue",)) or d in ("run", "log"):
                (target.path / d).mkdir(parents=True, exist_ok=True)
    if dry_run:
        return
    if target.exists():
        _restore_accounts(m, blobs, target, result, domain, acct)
        for key in sorted(touched_accounts):
            d, local = key.split("/", 1)
            path = target.mail_dir / d / local
            if (path / "cur").is_dir():
                from ..maildir import Maildir
                Maildir(path).resync()      # UIDs for added messages, quota recounted
    sync_filesystem(target.path if target.path.exists() else target.path.parent)


def _live_hashes(folder: Path, live: dict[str, tuple[str, str]]) -> set[str]:
    out = set()
    for sub, name in live.values():
        try:
            with open(folder / sub / name, "rb") as f:
                out.add(hashlib.file_digest(f, "sha256").hexdigest())
        except FileNotFoundError:
            continue
    return out


def _merge_folder(m: Manifest, blobs: destination.Blobs, target: Root, folder: str, entries, existed: bool,
                  result: RestoreResult, dry_run: bool) -> None:
    path = target.path / folder
    live = list_messages(path) if existed else {}
    hashes: set[str] | None = None
    todo = []
    for rel, sub, name, e in entries:
        base = base_name(name)
        if base in live:
            result.messages_present += 1
            continue
        if live:
            if hashes is None:
                hashes = _live_hashes(path, live)
            if e.sha256 in hashes:
                result.duplicates += 1
                continue
        todo.append((rel, sub, name, e))
    if dry_run or not todo and existed:
        result.messages_added += len(todo)
        return
    for sub in MAILDIR_DIRS:
        (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    remap = _keyword_remap(m, blobs, path, folder) if existed else {}
    for rel, sub, name, e in todo:
        final = name
        if remap:
            flags = flags_of(name)
            final = f"{base_name(name)}:2,{''.join(sorted(remap.get(c, c) for c in flags))}"
        tmp = path / "tmp" / f"{base_name(name)}.restore"
        if tmp.exists():
            tmp.unlink()       # left by an interrupted restore
        _write_copy(_blob(blobs, rel, e), tmp, e)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        try:
            os.link(tmp, path / sub / final)
            result.messages_added += 1
            result.files_written += 1
            result.bytes_written += e.size
        except FileExistsError:
            result.messages_present += 1
        os.unlink(tmp)
    for sub in ("cur", "new"):
        fsync_dir(path / sub)
    if existed:
        _maybe_bump(m, blobs, path, folder, todo, result)


def _keyword_remap(m: Manifest, blobs: destination.Blobs, path: Path, folder: str) -> dict[str, str]:
    """Backup keyword letters -> the live folder's letters (allocated if new)."""
    e = m.files.get(f"{folder}/dovecot-keywords")
    if e is None:
        return {}
    src = _blob(blobs, f"{folder}/dovecot-keywords", e)
    backup_kw = read_keywords(src.parent) if src.name == "dovecot-keywords" else {}
    live_kw = read_keywords(path)
    if not backup_kw or all(live_kw.get(k) == v for k, v in backup_kw.items()):
        return {}
    from ..maildir import Folder, Maildir
    f = Folder(Maildir(_account_dir(path, folder)), path.name, path)
    letters = f.keyword_letters(list(backup_kw.values()))
    return dict(zip(backup_kw.keys(), letters))


def _account_dir(path: Path, folder: str) -> Path:
    """The account directory of a folder ('mail/d/l' is INBOX, '.A.B' one level below)."""
    return path if folder.count("/") == 2 else path.parent


def _maybe_bump(m: Manifest, blobs: destination.Blobs, path: Path, folder: str, added, result: RestoreResult) -> None:
    """Bump UIDVALIDITY when an added message's old UID could now name another message."""
    e = m.files.get(f"{folder}/dovecot-uidlist")
    if e is None or not added:
        return
    backup_list = UidList.parse(_blob(blobs, f"{folder}/dovecot-uidlist", e).read_text("utf-8", "replace"))
    try:
        live_list = UidList.parse((path / "dovecot-uidlist").read_text("utf-8", "replace"))
    except FileNotFoundError:
        live_list = None
    if backup_list is None or live_list is None or backup_list.uidvalidity != live_list.uidvalidity:
        return
    old_uids = {b: uid for uid, _, b in backup_list.records}
    live_uids = {uid for uid, _, _ in live_list.records}
    added_bases = {base_name(name) for _, _, name, _ in added}
    if not any(old_uids.get(b, 0) in live_uids or old_uids.get(b, 0) >= live_list.next_uid
               for b in added_bases if b in old_uids):
        return
    from ..maildir import Folder, Maildir
    Folder(Maildir(_account_dir(path, folder)), path.name, path).bump_uidvalidity()
    result.uidvalidity_bumped.append(folder)


def _restore_accounts(m: Manifest, blobs: destination.Blobs, target: Root, result: RestoreResult,
                      domain: str | None, acct) -> None:
    """Accounts in the backup's domain files that the live directory lacks come back,
    with their password hashes, so their users can log in again."""
    import tomllib
    from .. import settings as settings_mod
    from ..directory_edit import add_account
    settings = settings_mod.load(target.config_file)
    for rel, e in m.files.items():
        if not (rel.startswith("domains/") and rel.endswith(".toml")):
            continue
        d = rel[len("domains/"):-len(".toml")]
        if (domain and d != domain) or (acct and d != acct[0]):
            continue
        live_file = target.domain_file(d)
        if not live_file.exists():
            tmp = live_file.with_name(f".{live_file.name}.restore.tmp")
            live_file.parent.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                tmp.unlink()
            _write_copy(_blob(blobs, rel, e), tmp, e)
            os.replace(tmp, live_file)
            result.files_written += 1
            continue
        data = tomllib.loads(_blob(blobs, rel, e).read_text("utf-8"))
        live = tomllib.loads(live_file.read_text("utf-8"))
        for local, info in data.get("accounts", {}).items():
            if acct and local != acct[1]:
                continue
            if local in live.get("accounts", {}) or local in live.get("aliases", {}) or local in live.get("lists", {}):
                continue
            add_account(target, settings, f"{local}@{d}", info.get("password", ""), info.get("name", ""),
                        info.get("quota_mb"))
            result.accounts_added.append(f"{local}@{d}")
