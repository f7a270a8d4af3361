"""One folder of an account: its uidlist kept up to date, its messages (sync), their
flags, reading them, and expunging, copying and moving them."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO, Iterable

from .. import nofollow
from ..errors import NotFound
from ..locks import DotLock
from ..root import fsync_dir
from ..storage_errors import StorageError, tolerate_storage_faults
from . import flags as flags_mod
from . import modseq as modseq_mod
from . import recent
from . import sync as sync_mod
from .content import copy_file, read_all, vsize
from .message import Message, current_path
from .names import DIR_MODE, SPECIAL_USE, delivery_order, locate, scan, sizes_from, unique_base
from .staging import Delivered, Staged
from .uidlist import UidList, dotlock, new_header, uidlist_for

# Measured sizes are written into the uidlist once this many (or a tenth of the folder) wait.
SAVE_SIZES_BATCH = 1000

# A flag change that keeps failing because other processes rename the file each time
# still ends (each failure means another change got through).
RENAME_TRIES = 100


class Folder:
    private_seen = False    # \Seen kept per user instead (privateseen.PrivateSeenFolder)

    def __init__(self, maildir, name: str, path: Path, complete: bool = False):
        """maildir: the account (a Maildir). complete: the caller has just used the
        folder's tmp/ (no need to look)."""
        self.maildir = maildir
        self.name = name
        self.path = path
        self.special_use = SPECIAL_USE.get(name)
        self.uidlist = uidlist_for(path)
        if not complete and not os.path.isdir(path / "tmp"):  # made by hand or half-made: complete it
            for sub in ("cur", "new", "tmp"):
                (path / sub).mkdir(mode=DIR_MODE, exist_ok=True)

    def __repr__(self) -> str:
        return f"Folder({self.name!r}, {str(self.path)!r})"

    def _lock(self) -> DotLock:
        return dotlock(self.path)

    def _new_header(self) -> dict[str, str]:
        return new_header(self.maildir.path)

    # -- uidlist --
    def ensure_uidlist(self) -> UidList:
        """The folder's uidlist, refreshed, and made if missing."""
        uidlist = self.uidlist
        uidlist.refresh()
        if not uidlist.exists:
            with self._lock():
                uidlist.refresh()
                if not uidlist.exists:
                    uidlist.rewrite(self._new_header(), {})
        return uidlist

    def uidvalidity(self) -> int:
        return self.ensure_uidlist().uidvalidity

    def uidnext(self) -> int:
        return self.ensure_uidlist().next_uid

    def assign_uids(self, bases: list[str], listing: dict[str, tuple[str, str]] | None = None,
                    sizes: bool = True) -> tuple[dict[str, tuple[int, str]], list[str]]:
        """Give UIDs to bases not yet listed (appending records); return the records and
        the bases numbered now, in UID order (above every UID given before).
        sizes=False: no S/W keys for names without ,S=/,W= (no file is read)."""
        uidlist = self.uidlist
        with self._lock():             # refreshed (and created if missing) under the lock
            uidlist.refresh()
            if not uidlist.exists:
                uidlist.rewrite(self._new_header(), {})
            records = uidlist.records
            # A list in listing order, not a set: sorting strings in hash order costs twice
            # as much (they lie scattered in memory). The bases are distinct.
            fresh = delivery_order([b for b in bases if b not in records] if records else bases)
            if fresh:
                uidlist.append(uidlist.next_uid, fresh,
                               [self._size_keys(base, listing) for base in fresh] if sizes else None)
            return uidlist.records, fresh

    def _size_keys(self, base: str, listing: dict[str, tuple[str, str]] | None = None) -> str:
        """S/W record keys for a file whose name lacks ,S=/,W= (read once, as Dovecot does)."""
        size, vsize_ = sizes_from(base, "")
        if size is not None and vsize_ is not None:
            return ""
        located = listing.get(base) if listing else locate(self.path, base)
        for _ in range(2):
            if located is None:
                return ""
            try:
                data = read_all(f"{self.path}/{located[0]}/{located[1]}")
                return f"S{len(data)} W{vsize(data)}"
            except FileNotFoundError:
                located = locate(self.path, base)  # renamed by a flag change meanwhile
        return ""

    def save_sizes_when_due(self, uidlist: UidList, count: int) -> None:
        """Save measured sizes once enough wait (SAVE_SIZES_BATCH, or a tenth of count)."""
        if len(uidlist.unsaved) >= max(SAVE_SIZES_BATCH, count // 10):
            self._save_sizes()

    def save_measured_sizes(self) -> None:
        """After a command that measured many sizes (an IMAP client's first RFC822.SIZE
        of a folder): save them now, so another process's sync (a POP3 login) finds them
        in the uidlist instead of reading every file, and need not wait for our next sync."""
        uidlist = self.uidlist
        self.save_sizes_when_due(uidlist, len(uidlist.records))

    def _save_sizes(self) -> None:
        """Sizes measured on first use into their records (S/W keys, as Dovecot writes
        them): other processes and later syncs then know them without reading files."""
        uidlist = self.uidlist
        with self._lock():
            generation = uidlist.generation
            uidlist.refresh()
            bases, uidlist.unsaved = uidlist.unsaved, set()
            records = dict(uidlist.records)
            for base in bases:
                record, sizes = records.get(base), uidlist.sizes.get(base)
                if record is not None and sizes is not None and not record[1]:
                    records[base] = (record[0], f"S{sizes[0]} W{sizes[1]}")
            if records != uidlist.records:
                header = dict(uidlist.header)
                header["N"] = str(uidlist.next_uid)
                last = uidlist.last_sync
                try:
                    uidlist.rewrite(header, records)
                except StorageError:            # a full disk: the sizes wait for a later save
                    uidlist.unsaved |= bases
                    return
                # Only keys were added, UIDs are as they were: the last sync's result still
                # holds (unless the refresh above found another writer's rewrite), so the
                # next sync may patch it instead of listing 100,000 files afresh.
                if last is not None and last.generation == generation == uidlist.generation - 1:
                    uidlist.last_sync = last._replace(generation=uidlist.generation)

    def forget(self, bases: Iterable[str]) -> None:
        """Drop records of files that are gone (rename-replace; next_uid is kept)."""
        uidlist = self.uidlist
        with self._lock():
            uidlist.refresh()
            doomed = set(bases) & uidlist.records.keys()
            for base in doomed:
                uidlist.sizes.pop(base, None)
            if not doomed:
                return
            header = dict(uidlist.header)
            header["N"] = str(uidlist.next_uid)
            kept = {b: r for b, r in uidlist.records.items() if b not in doomed}
            with tolerate_storage_faults():     # a record without a file harms no reader
                uidlist.rewrite(header, kept)

    def rebuild(self) -> None:
        """The uidlist made again from the files, keeping the UIDs of those it lists."""
        uidlist = self.ensure_uidlist()
        with self._lock():
            uidlist.refresh()
            listing = scan(self.path)
            header = dict(uidlist.header) if uidlist.exists else self._new_header()
            header["N"] = str(uidlist.next_uid)
            records = {b: r for b, r in uidlist.records.items() if b in listing}
            uid = uidlist.next_uid
            for base in delivery_order(listing.keys() - records.keys()):
                records[base] = (uid, self._size_keys(base, listing))
                uid += 1
            header["N"] = str(uid)
            uidlist.rewrite(header, records)

    def bump_uidvalidity(self) -> int:
        """Start a new UIDVALIDITY and number every message afresh (after a restore that
        could make an old UID name another message); IMAP clients then resync cleanly."""
        with self._lock():
            self.uidlist.refresh()
            header = self._new_header()
            listing = scan(self.path)
            records = {base: (i, "") for i, base in enumerate(delivery_order(listing), 1)}
            header["N"] = str(len(records) + 1)
            self.uidlist.rewrite(header, records)
            return int(header["V"])

    def record_fields(self, key: str) -> dict[str, str]:
        """One extension field of every dovecot-uidlist record that has it, by base name
        (e.g. "P": the POP3 UIDL that Dovecot keeps for migrated mail)."""
        found = {}
        for base, (_, keys) in self.ensure_uidlist().records.items():
            if key in keys:
                for item in keys.split(" "):
                    if item[:1] == key and len(item) > 1:
                        found[base] = item[1:]
        return found

    # -- messages --
    def sync(self, sizes: bool = True) -> list[Message]:
        """Messages by UID: directory listing plus uidlist; new files get UIDs.

        Message objects of unchanged files are reused from the last sync, so a sync
        of a large, quiet folder is two listdir() calls and dictionary lookups, and
        none at all while new/, cur/ and the uidlist keep the stamp of a settled sync.
        sizes=False: files named without sizes are not read now, but when a size of
        theirs is first asked for (an IMAP SELECT of a folder filled by other tools).
        """
        return sync_mod.sync(self, sizes, None).messages

    messages = sync

    def sync_quietly(self, max_new: int) -> sync_mod.Synced | None:
        """A sync for a background refresh: it reads no message file (as sizes=False),
        and when more than max_new files would need UIDs (a bulk fill, left to the first
        client that opens the folder) it gives none and returns None."""
        return sync_mod.sync(self, False, max_new)

    # -- flags --
    def keyword_letters(self, keywords: list[str]) -> list[str]:
        """The letters of keywords in this folder, allocating new ones in dovecot-keywords."""
        return flags_mod.keyword_letters(self.path, keywords)

    def set_flags(self, msg: Message, flags: Iterable[str]) -> Message:
        """Replace the flag set: one rename to cur/<base>:2,<letters>."""
        return self.apply_flag_change(msg, self.flag_change(replace=flags))

    def change_flags(self, msg: Message, add: Iterable[str] = (), remove: Iterable[str] = (),
                     replace: Iterable[str] | None = None) -> Message:
        """Add and remove flags (or replace them all) against the message's flags on
        disk now, not msg's; returns the message as it is after the change."""
        return self.apply_flag_change(msg, self.flag_change(add, remove, replace))

    def flag_change(self, add: Iterable[str] = (), remove: Iterable[str] = (),
                    replace: Iterable[str] | None = None) -> flags_mod.FlagChange:
        """A change to apply to many messages (STORE 1:*): keyword letters given once."""
        return flags_mod.FlagChange(self.path, add, remove, replace)

    def apply_flag_change(self, msg: Message, change: flags_mod.FlagChange) -> Message:
        """One rename from the file's current name to the name its new flags give.

        The rename is the compare-and-swap: it fails (ENOENT) when another session,
        Dovecot or mutt renamed the file after we read its name, and then the change is
        worked out again from the name the file has now. So a change touches only the
        flags it names and never writes back a stale set. When the name would not change,
        an lstat() shows the file still has it, so the result is the flags on disk."""
        base = msg.base
        cut = len(base) + 1
        sub, filename = msg.subdir, msg.filename
        # Plain strings, not Path objects: STORE 1:* renames every message of a folder.
        path = f"{self.path}/"
        for _ in range(RENAME_TRIES):
            info = filename[cut:]
            letters, _, extra = info[2:].partition(",") if info.startswith("2,") else ("", "", "")
            new_letters = change.letters(letters)
            new_name = f"{base}:2,{new_letters}" + ("," + extra if extra else "")
            try:
                if sub == "cur" and filename == new_name:
                    os.lstat(path + "cur/" + filename)
                    if msg.subdir == "cur" and msg.filename == filename:
                        return msg
                else:
                    os.rename(f"{path}{sub}/{filename}", f"{path}cur/{new_name}")
                return Message(msg.uid, base, "cur", new_name, change.flags(new_letters), msg._size,
                               msg._vsize, msg.folder_path)
            except FileNotFoundError:
                located = locate(self.path, base)  # renamed by someone else meanwhile
                if located is None:
                    break
                sub, filename = located
        raise NotFound(f"message UID {msg.uid} in {self.name!r} no longer exists")

    def flush_flag_changes(self) -> None:
        """After a batch of apply_flag_change: flags kept elsewhere than the file name
        written (none here; privateseen.PrivateSeenFolder's \\Seen)."""

    # -- mod-sequences (CONDSTORE, QRESYNC: modseq.py) --
    def modseqs(self) -> modseq_mod.ModSeqStore:
        """The folder's mailctl-modseq, locked for one step: `with folder.modseqs() as ms`."""
        return modseq_mod.ModSeqStore(self.path, self.ensure_uidlist().uidvalidity)

    def observe_modseqs(self, msgs: Iterable[Message], complete: bool = False) -> tuple[int, dict[int, int]]:
        """(highest, {uid: modseq}) of msgs, changes since last looked at recorded.
        complete: msgs is a fresh whole listing, so recorded UIDs missing from it are
        expunges (unless the uidlist, read again, still lists them)."""
        uidlist = self.uidlist

        def still_listed() -> set[int]:
            uidlist.refresh()
            return {record[0] for record in uidlist.records.values()}
        with self.modseqs() as ms:
            return ms.observe(msgs, still_listed if complete else None)

    def highest_modseq(self) -> int:
        """The folder's HIGHESTMODSEQ now (STATUS): a sync, and what it found recorded."""
        return self.observe_modseqs(self.sync(sizes=False), complete=True)[0]

    # -- reading --
    def open(self, msg: Message) -> BinaryIO:
        for _ in range(3):
            try:
                return os.fdopen(nofollow.open_file(current_path(msg)), "rb")
            except FileNotFoundError:          # or a link (LinkRefused)
                continue
        raise NotFound(f"message UID {msg.uid} in {self.name!r} no longer exists")

    def read(self, msg: Message) -> bytes:
        with self.open(msg) as f:
            return f.read()

    def read_if_cached(self, msg: Message, max_bytes: int | None = None) -> bytes:
        """The message only if the kernel holds all of it in memory: a read that cannot
        wait for the disk (preadv with RWF_NOWAIT), so an event loop may do it itself
        instead of paying a hop to a worker thread. BlockingIOError when the file, or part
        of it, would come from disk, or it moved, or it is larger than max_bytes (what
        the caller does with it would hold the loop): then read() it in a worker thread."""
        try:
            fd = nofollow.open_file(f"{self.path}/{msg.subdir}/{msg.filename}")
        except FileNotFoundError:
            raise BlockingIOError("moved") from None
        try:
            size = msg._size if msg._size is not None else os.fstat(fd).st_size
            if max_bytes is not None and size > max_bytes:
                raise BlockingIOError("large")
            buf = bytearray(size + 1)          # one byte more: a file longer than we thought shows
            try:
                got = os.preadv(fd, [buf], 0, os.RWF_NOWAIT)
            except OSError as e:
                if e.errno != errno.EOPNOTSUPP:
                    raise
                raise BlockingIOError("no RWF_NOWAIT here") from None   # tmpfs, some kernels
            if got != size:
                raise BlockingIOError("short read")
            return bytes(memoryview(buf)[:got])
        finally:
            os.close(fd)

    # -- changes --
    def expunge(self, msgs: Iterable[Message]) -> None:
        removed_bases, nbytes, count = [], 0, 0
        for msg in msgs:
            if not self._unlink(msg):
                continue
            removed_bases.append(msg.base)
            nbytes += msg.size
            count += 1
        if not removed_bases:
            return
        for sub in ("new", "cur"):
            fsync_dir(self.path / sub)
        self.forget(removed_bases)
        with tolerate_storage_faults():         # the files are gone: that is the expunge
            self.maildir.quota.add(-nbytes, -count)

    def _unlink(self, msg: Message) -> bool:
        """Unlink a message even if it is being renamed (flag change) meanwhile."""
        for _ in range(5):
            try:
                os.unlink(current_path(msg))
                return True
            except NotFound:
                return False
            except FileNotFoundError:
                continue
        return False

    def copy_to(self, msg: Message, dest: Folder) -> Delivered:
        dest.maildir.check_quota(msg.size)
        return self.copy_unchecked(msg, dest)

    def copy_unchecked(self, msg: Message, dest: Folder, flags: frozenset[str] | None = None) -> Delivered:
        """copy_to() without the quota check (the caller checked the whole set). Hard link (fallback: copy with the same mtime) into dest tmp/, then commit to cur/.
        flags: those the copy gets instead of msg's (what the user may set in dest)."""
        base = unique_base(msg.size, msg.vsize)
        tmp = dest.path / "tmp" / base
        for attempt in range(RENAME_TRIES):
            src = current_path(msg)      # NotFound when it is gone for good
            try:
                os.link(src, tmp)
                break
            except FileNotFoundError:
                # another session's flag change renamed it between the two steps: find it again
                if attempt == RENAME_TRIES - 1:
                    raise NotFound(f"message UID {msg.uid} kept moving; not copied") from None
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                copy_file(src, tmp, msg.mtime)
                break
        return Staged(dest, tmp, base, msg.flags if flags is None else flags, msg.size, to_cur=True).commit()

    def keep_arrivals_recent(self) -> None:
        """Before a session puts messages straight into cur/ (APPEND with flags, COPY,
        MOVE): they are to be recent to the first session that selects the folder, also
        when none has yet and new/ alone would tell (recent.py)."""
        recent.open_claims(self.path, self.uidvalidity(), self._floor_before_arrivals)

    def _floor_before_arrivals(self) -> int:
        """The highest UID given out, or below the lowest of a message still in new/
        (never seen by a session of ours: recent by the new/ rule, and to stay so)."""
        uidlist = self.ensure_uidlist()
        records = uidlist.records
        waiting = [records[b][0] for b in (n.partition(":")[0] for n in nofollow.list_files(self.path, "new"))
                   if b in records]
        return min([uidlist.next_uid, *waiting]) - 1

    def move_to(self, msg: Message, dest: Folder) -> Delivered:
        delivered = self.copy_unchecked(msg, dest)
        self.expunge([msg])
        return delivered

    def status(self) -> dict:
        msgs = self.sync()
        uidlist = self.uidlist      # refreshed by the sync: no third and fourth read of it
        return {
            "messages": len(msgs),
            "unseen": sum(1 for m in msgs if "\\Seen" not in m.flags),
            "deleted": sum(1 for m in msgs if "\\Deleted" in m.flags),     # IMAP4rev2's STATUS DELETED
            "recent": recent.count(self.path, self.uidvalidity(), msgs),
            "size": sum(m.size for m in msgs),            # on disk (mailctl mailbox list)
            "vsize": sum(m.vsize for m in msgs),           # as served: CRLF line ends (STATUS SIZE)
            "uidnext": uidlist.next_uid,
            "uidvalidity": uidlist.uidvalidity,
        }
