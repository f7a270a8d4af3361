"""One account's Maildir++ tree (Maildir): its folders, subscriptions and quota, and
writing messages in."""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .. import foldernames, mutf7, nofollow
from ..errors import AlreadyExists, InvalidInput, NotFound
from ..locks import dir_lock
from ..root import Root, atomic_write, fsync_dir
from ..storage_errors import tolerate_storage_faults
from .content import vsize
from .flags import normalize_flags
from .folder import Folder
from . import specialuse
from .names import (DEFAULT_FOLDERS, DIR_MODE, FILE_MODE, INBOX, MTIME_SLACK, SEPARATOR,
                    SUBSCRIPTIONS, canonical_name, unique_base)
from .quota import Quota, usage_of
from .staging import Delivered, Staged
from .uidlist import UidList, new_header


@dataclass(frozen=True)
class FolderInfo:
    name: str
    special_use: str | None
    subscribed: bool
    has_children: bool


@dataclass(frozen=True)
class TreeListing:
    """An account's folders and subscriptions as one reading found them, with the stamp
    (tree_stamp) of the tree taken before it."""
    stamp: tuple
    folders: list[FolderInfo]
    subscribed: frozenset[str]


# The last settled TreeListing of each account (by its path), for this process's sessions:
# a LIST of a tree nobody changed since costs two lstat() calls (Maildir.cached_listing).
_LISTINGS: OrderedDict[str, TreeListing] = OrderedDict()
_LISTINGS_MAX = 256
_listings_lock = threading.Lock()


class Maildir:
    """One account's Maildir++ tree (INBOX = the top directory)."""

    def __init__(self, path: Path, top: Path | None = None):
        self.path = Path(path).absolute()
        # Below top no directory may be a symbolic link (nofollow); above it is the admin's
        # choice. An account's Maildir: the mail root; else the Maildir's own directory.
        self.top = Path(top).absolute() if top is not None else self.path.parent
        self.quota = Quota(self.path)

    @classmethod
    def for_account(cls, root: Root, domain: str, local: str) -> Maildir:
        for part in (domain, local):
            if not part or part in (".", "..") or "/" in part or "\0" in part:
                raise InvalidInput(f"{local}@{domain}: not a safe mailbox path component")
        return cls(root.mail_dir / domain / local, root.path)

    def __repr__(self) -> str:
        return f"Maildir({str(self.path)!r})"

    def exists(self) -> bool:
        try:
            nofollow.check_dirs(self.top, self.path / "cur")
        except FileNotFoundError:      # or a link on the way (LinkRefused)
            return False
        return True

    def create(self, folders: list[str] = DEFAULT_FOLDERS, quota_bytes: int = 0) -> None:
        """Make the tree (idempotent). An existing quota is changed only by a non-zero quota_bytes."""
        try:
            nofollow.check_dirs(self.top, self.path, missing_ok=True)
        except nofollow.LinkRefused:   # a MailError alone: servers answer it like a missing mailbox
            raise NotFound(f"mailbox {self.path.name}: a symbolic link inside the mail root (not "
                           f"followed); see 'mailctl config check'") from None
        created = not self.path.exists()
        for sub in ("cur", "new", "tmp"):
            (self.path / sub).mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if created:
            fsync_dir(self.path.parent)
        self.folder(INBOX).ensure_uidlist()
        for name in folders:
            with contextlib.suppress(AlreadyExists):
                self.create_folder(name)
        self._update_subscriptions(add=[canonical_name(n) for n in folders])
        if not self.quota.exists() or (quota_bytes and quota_bytes != self.quota_limit()):
            self.set_quota(quota_bytes)

    # -- folders --
    def folder(self, name: str) -> Folder:
        name, path = self._locate(name)
        if name == INBOX:
            if not self.exists() or not nofollow.is_folder(self.top, path):
                raise NotFound(f"{self.path}: no such mailbox; create the account first")
        elif not nofollow.is_folder(self.top, path):
            raise NotFound(f"folder {name!r} does not exist")
        return Folder(self, name, path)

    def folder_path(self, name: str) -> Path:
        """A folder's directory, without touching the disk (it may not exist)."""
        return self._locate(name)[1]

    def _locate(self, name: str) -> tuple[str, Path]:
        """A folder's canonical name and directory, without touching the disk."""
        comps = foldernames.split(name)
        if comps == [INBOX]:
            return INBOX, self.path
        return SEPARATOR.join(comps), self.path / foldernames.dirname(comps)

    def _folder_names(self) -> list[str]:
        names = []
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                    name = foldernames.name_from_dirname(entry.name)
                    if name is not None:
                        names.append(name)
        return sorted(names)

    def list_folders(self) -> list[FolderInfo]:
        return self._folder_infos(set(self.subscriptions()))

    def _folder_infos(self, subscribed: set[str]) -> list[FolderInfo]:
        names = self._folder_names()
        parents = {n.rsplit(SEPARATOR, 1)[0] for n in names if SEPARATOR in n}
        given = specialuse.read(self.path)
        return [FolderInfo(n, specialuse.uses_of(n, given), n in subscribed, n in parents)
                for n in [INBOX, *names]]

    def special_use(self, name: str) -> str | None:
        """One folder's special-use attributes ("\\Trash"), given or by its name."""
        return specialuse.uses_of(name, specialuse.read(self.path))

    def tree_stamp(self) -> tuple[tuple, float]:
        """What lstat() says of the top directory, the subscriptions and the special-use
        files, and the newest of their times. A folder made, deleted or renamed (here, by
        another process or by Dovecot) is a change of the top directory's entries, so of
        its time; the other files are replaced whole (or written in place: size or time)."""
        out = []
        for path in (self.path, self.path / SUBSCRIPTIONS, self.path / specialuse.SPECIAL_USE_FILE):
            try:
                st = os.lstat(path)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                out.append(None)
        return tuple(out), max((s[0] for s in out if s), default=0) / 1e9

    def listing(self) -> TreeListing:
        """The folders and subscriptions read now. Kept for cached_listing() when the
        reading began well after the tree's last change: directory times come from a
        coarse clock, so a change within the same tick would not show as a new time."""
        started = time.time()
        stamp, newest = self.tree_stamp()
        subscribed = frozenset(self.subscriptions())
        found = TreeListing(stamp, self._folder_infos(subscribed), subscribed)
        if stamp[0] is not None and started - newest > MTIME_SLACK:
            key = str(self.path)
            with _listings_lock:
                _LISTINGS[key] = found
                _LISTINGS.move_to_end(key)
                while len(_LISTINGS) > _LISTINGS_MAX:
                    _LISTINGS.popitem(last=False)
        return found

    def cached_listing(self) -> TreeListing | None:
        """The last settled listing() while the tree's stamp is still the one it was made
        at, else None (read it again). Two lstat() calls: cheap enough for an event loop."""
        stamp, _ = self.tree_stamp()
        with _listings_lock:
            found = _LISTINGS.get(str(self.path))
        return found if found is not None and found.stamp == stamp else None

    def create_folder(self, name: str, uses: list[str] | None = None) -> Folder:
        """uses: special-use attributes to give it (RFC 6154 CREATE-SPECIAL-USE); a use
        that cannot be given is refused (InvalidInput) before anything is made."""
        comps = foldernames.split(name, new=True)
        if comps == [INBOX]:
            raise AlreadyExists("INBOX always exists")
        if uses:
            uses = specialuse.check_uses(uses)
        self._make_parents(comps)
        self._make_folder_dir(comps)
        if uses:
            try:
                specialuse.update(self.path, set_=(SEPARATOR.join(comps), uses))
            except BaseException:
                # RFC 6154 §3: a folder that cannot have its use is not made at all
                self.delete_folder(name)
                raise
        return self.folder(name)

    def _make_parents(self, comps: list[str]) -> None:
        for depth in range(1, len(comps)):
            if comps[:depth] == [INBOX]:    # always there; a ".INBOX" directory would be no folder
                continue
            with contextlib.suppress(AlreadyExists):
                self._make_folder_dir(comps[:depth])

    def _make_folder_dir(self, comps: list[str]) -> None:
        """Build the folder in tmp/ and rename it into place, so it appears complete."""
        target = self.path / foldernames.dirname(comps)
        if os.path.lexists(target):
            raise AlreadyExists(f"folder {SEPARATOR.join(comps)!r} already exists")
        staging = self.path / "tmp" / f".newfolder.{os.getpid()}.{secrets.token_hex(6)}"
        try:
            staging.mkdir(mode=DIR_MODE)
            for sub in ("cur", "new", "tmp"):
                (staging / sub).mkdir(mode=DIR_MODE)
            (staging / "maildirfolder").touch(mode=FILE_MODE)
            UidList(staging).rewrite(new_header(self.path), {})
            os.rename(staging, target)
        except OSError as e:
            shutil.rmtree(staging, ignore_errors=True)
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise AlreadyExists(f"folder {SEPARATOR.join(comps)!r} already exists") from None
            raise
        fsync_dir(self.path)

    def rename_folder(self, old: str, new: str) -> None:
        """Rename a folder and its children, as Dovecot does."""
        old_comps, new_comps = foldernames.split(old), foldernames.split(new, new=True)
        if new_comps == [INBOX]:
            raise AlreadyExists("INBOX always exists")
        if old_comps == [INBOX]:
            self._rename_inbox(SEPARATOR.join(new_comps))
            return
        old_dir, new_dir = foldernames.dirname(old_comps), foldernames.dirname(new_comps)
        if new_comps[:len(old_comps)] == old_comps:
            raise InvalidInput(f"cannot rename {old!r} into itself ({new!r})")
        if not nofollow.is_folder(self.top, self.path / old_dir):
            raise NotFound(f"folder {old!r} does not exist")
        moves = [(old_dir, new_dir)] + [(d, new_dir + d[len(old_dir):]) for d in self._dirs_under(old_dir)]
        for _, target in moves:
            if os.path.lexists(self.path / target):
                shown = foldernames.name_from_dirname(target) or target
                raise AlreadyExists(f"folder {shown!r} already exists")
        self._make_parents(new_comps)
        for source, target in moves:
            os.rename(self.path / source, self.path / target)
        fsync_dir(self.path)
        old_name, new_name = SEPARATOR.join(old_comps), SEPARATOR.join(new_comps)
        with tolerate_storage_faults():         # the folder has moved: that is the rename
            self._update_subscriptions(rename=(old_name, new_name))
            specialuse.update(self.path, rename=(old_name, new_name))

    def _rename_inbox(self, new: str) -> None:
        """RFC 3501 §6.3.5: renaming INBOX moves its messages, flags kept, to a new folder
        and leaves INBOX there, empty; its subfolders stay where they are. Mail arriving
        meanwhile stays in INBOX."""
        dest = self.create_folder(new)        # AlreadyExists when the name is taken
        inbox = self.folder(INBOX)
        moved, copies = [], []
        try:
            for msg in inbox.sync():
                try:
                    copies.append(inbox.copy_unchecked(msg, dest).path)
                except NotFound:
                    continue                  # expunged by another session meanwhile
                moved.append(msg)
        except BaseException:
            # a full disk midway: INBOX keeps every message, the new folder none
            for path in copies:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        inbox.expunge(moved)

    def _dirs_under(self, dirname: str) -> list[str]:
        return sorted(e for e in os.listdir(self.path) if e.startswith(dirname + "."))

    def delete_folder(self, name: str) -> None:
        comps = foldernames.split(name)
        if comps == [INBOX]:
            raise InvalidInput("INBOX cannot be deleted")
        folder = self.folder(name)
        dirname = foldernames.dirname(comps)
        if self._dirs_under(dirname):
            raise InvalidInput(f"folder {folder.name!r} has subfolders; delete them first")
        nbytes, count = usage_of([folder.path])
        # Rename out of sight first, so readers never see a half-deleted folder.
        doomed = self.path / "tmp" / f".deleted.{os.getpid()}.{secrets.token_hex(6)}"
        os.rename(folder.path, doomed)
        fsync_dir(self.path)
        shutil.rmtree(doomed, ignore_errors=True)
        with tolerate_storage_faults():         # the folder is gone: that is the delete
            self.quota.add(-nbytes, -count)
            self._update_subscriptions(remove=[folder.name])
            specialuse.update(self.path, remove=folder.name)

    # -- subscriptions (Dovecot's "V\t2" file: names with components joined by TAB) --
    def subscriptions(self) -> list[str]:
        try:
            text = nofollow.read_text(self.path / SUBSCRIPTIONS, "replace")
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        if lines[0].startswith("V\t"):
            lines = lines[2:] if len(lines) > 1 and lines[1] == "" else lines[1:]
            sep = "\t"
        else:
            sep = SEPARATOR  # version 1: one name per line
        names: list[str] = []
        for line in lines:
            if not line:
                continue
            try:
                name = canonical_name(SEPARATOR.join(mutf7.decode(c) for c in line.split(sep)))
            except InvalidInput:
                continue
            if name not in names:
                names.append(name)
        return names

    def subscribe(self, name: str) -> None:
        self._update_subscriptions(add=[canonical_name(name)])

    def unsubscribe(self, name: str) -> None:
        self._update_subscriptions(remove=[canonical_name(name)])

    def _update_subscriptions(self, add: Iterable[str] = (), remove: Iterable[str] = (),
                              rename: tuple[str, str] | None = None) -> None:
        with dir_lock(self.path):
            before = self.subscriptions()
            names = [n for n in before if n not in set(remove)]
            if rename:
                old, new = rename
                names = [new + n[len(old):] if n == old or n.startswith(old + SEPARATOR) else n
                         for n in names]
            names += [n for n in add if n not in names]
            if names == before and (self.path / SUBSCRIPTIONS).exists():
                return
            lines = ["\t".join(mutf7.encode(c) for c in n.split(SEPARATOR)) + "\n" for n in names]
            atomic_write(self.path / SUBSCRIPTIONS, "V\t2\n\n" + "".join(lines), mode=FILE_MODE)

    # -- quota (maildirsize: quota.py) --
    def quota_usage(self) -> tuple[int, int]:
        return self.quota.usage()

    def quota_limit(self) -> int:
        return self.quota.limit()

    def set_quota(self, quota_bytes: int) -> None:
        self.quota.set(quota_bytes)

    def check_quota(self, size: int, limit: int | None = None) -> None:
        """limit: the account's quota when the caller knows it (the directory is the truth);
        None reads it from maildirsize."""
        self.quota.check(size, limit)

    # -- messages --
    def stage(self, data: bytes, folder: str = INBOX, flags: Iterable[str] = (),
              internaldate: float | None = None, check_quota: bool = True,
              assign_uid: bool = True, quota_bytes: int | None = None) -> Staged:
        flag_set = normalize_flags(flags)
        if check_quota:
            self.check_quota(len(data), quota_bytes)
        base = unique_base(len(data), vsize(data))
        name, path = self._locate(folder)
        tmp = path / "tmp" / base
        try:
            # the open is the existence check (O_EXCL follows no link); no directory on the
            # way may be a link: a few lstat() calls, no more
            nofollow.check_folder(self.top, path)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            target = Folder(self, name, path, complete=True)
        except FileNotFoundError:             # a link on the way (LinkRefused) too
            target = self.folder(folder)      # NotFound, or a half-made folder completed
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            try:
                # plain os.write: no buffered file object (fewer syscalls, each one a GIL handoff)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if internaldate is not None:
                os.utime(tmp, (internaldate, internaldate))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        staged = Staged(target, tmp, base, flag_set, len(data), to_cur=bool(flag_set))
        staged.assign_uid = assign_uid
        return staged

    def stage_file(self, path: Path, size: int, vsize: int, folder: str = INBOX, flags: Iterable[str] = (),
                   internaldate: float | None = None, quota_bytes: int | None = None,
                   check_quota: bool = True) -> Staged:
        """A message already written and fsync'd in this account's tmp/ (engine/spool.py),
        staged under its Maildir name without another copy; commit() renames it into place."""
        flag_set = normalize_flags(flags)
        if check_quota:
            self.check_quota(size, quota_bytes)
        target = self.folder(folder)
        if internaldate is not None:
            os.utime(path, (internaldate, internaldate))
        return Staged(target, path, unique_base(size, vsize), flag_set, size, to_cur=bool(flag_set))

    def deliver(self, data: bytes, folder: str = INBOX, flags: Iterable[str] = (),
                internaldate: float | None = None, check_quota: bool = True) -> Delivered:
        staged = self.stage(data, folder, flags, internaldate, check_quota)
        try:
            return staged.commit()
        except BaseException:
            staged.abort()
            raise

    def resync(self) -> None:
        """Rebuild every folder's uidlist (keeping UIDs) and the quota from the files."""
        self.folder(INBOX).rebuild()
        for name in self._folder_names():
            self.folder(name).rebuild()
        self.quota.recalc()
