"""The sync of a folder: its messages by UID, from a listing of new/ and cur/ and the
uidlist; files without a record get UIDs.

A sync in this process is remembered (uidlist.LastSync): while new/, cur/ and the
uidlist keep a settled stamp it is returned as it was; after a few changes it is
patched with what changed in the listing; else the full sync lists the folder again,
reusing the Message objects of unchanged files.
"""
from __future__ import annotations

import enum
import operator
import time
from typing import NamedTuple

from .. import nofollow
from ..storage_errors import StorageError
from . import tmpclean
from .content import measure
from .flags import flags_from_info, keywords_ident, letter_map
from .message import Message
from .names import MTIME_SLACK, folder_stamp, scan, sizes_from
from .uidlist import LastSync, UidList

_by_uid = operator.attrgetter("uid")
_NO_FLAGS: frozenset[str] = frozenset()


class Synced(NamedTuple):
    """What a sync found: the folder's messages by UID, and the folder's stamp
    (names.folder_stamp) taken before the listing; None when the folder was still
    changing then, so the listing may not be reused while the stamp stays the same."""
    stamp: tuple | None
    messages: list[Message]


class Fallback(enum.Enum):
    """Why a sync gave no list of messages."""
    FULL_SYNC = "the last sync cannot be patched: the full sync lists the folder"
    DECLINED = "more files need UIDs than a quiet sync gives (max_new)"
    RELIST = "files listed unnumbered were numbered meanwhile by a commit of several: list again"


# How often a sync lists a folder again when its listing caught another writer midway
# through linking several messages (staging.commit_together): then it accepts what it saw.
RELISTS = 2


def sync(folder, sizes: bool, max_new: int | None) -> Synced | None:
    """The messages of folder (a Folder) by UID. sizes=False: files named without sizes
    are not read now. max_new: when more files than this need UIDs, none are given and
    the result is None (Fallback.DECLINED)."""
    tmpclean.clean_when_due(folder.path)            # at most hourly: crash leftovers in tmp/
    stamp, newest = folder_stamp(folder.path)       # before the listing: a later change shows
    settled = time.time() - newest > MTIME_SLACK
    with folder.uidlist.sync_gate:
        uidlist = folder.ensure_uidlist()
        keywords = keywords_ident(folder.path)
        last = uidlist.last_sync
        if (last is not None and last.stamp == stamp and last.generation == uidlist.generation
                and last.keywords == keywords and (last.sized or not sizes)):
            return Synced(stamp, list(last.result))
        stamp = stamp if settled else None
        for attempt in range(RELISTS + 1):
            relist = attempt < RELISTS
            listing = {sub: nofollow.list_files(folder.path, sub) for sub in ("new", "cur")}   # new/ first
            patched = patch_last_sync(folder, uidlist, keywords, sizes, listing, stamp, max_new, relist)
            if patched is Fallback.FULL_SYNC:
                patched = full_sync(folder, uidlist, keywords, sizes, listing, stamp, max_new, relist)
                if patched is not Fallback.RELIST:
                    return None if patched is Fallback.DECLINED else Synced(stamp, patched)
            elif patched is not Fallback.RELIST:
                break
        if patched is Fallback.DECLINED:
            return None
        folder.save_sizes_when_due(uidlist, len(patched))
        return Synced(stamp, patched)


def full_sync(folder, uidlist: UidList, keywords: tuple, sizes: bool, listing: dict[str, list[str]],
              stamp: tuple | None, max_new: int | None, relist: bool = False) -> list[Message] | Fallback:
    """Every listed file checked against its record (Messages of unchanged files reused)."""
    records = uidlist.records
    generation = uidlist.generation
    cache = uidlist.message_cache(keywords)
    builder = _MessageBuilder(folder, sizes)
    found: dict[str, Message] = {}
    unknown: dict[str, tuple[str, str]] = {}
    # new/ first: a file moving to cur/ meanwhile is still seen.
    for sub in ("new", "cur"):
        known = cache[sub]
        if not known and not records:     # a first sync: every file waits for a UID
            unknown.update({n.partition(":")[0]: (sub, n) for n in listing[sub] if n[:1] != "."})
            continue
        for name in listing[sub]:
            msg = known.get(name)
            if msg is not None and records.get(msg.base, (0,))[0] == msg.uid and (
                    msg._vsize is not None or not sizes):
                found[msg.base] = msg
                continue
            _place(sub, name, records, builder, found, unknown)
    if max_new is not None and len(unknown) > max_new:
        return Fallback.DECLINED
    if len(found) < len(records):
        _recheck_missing(folder, records, found, unknown, builder)
    result = sorted(found.values(), key=_by_uid)
    if unknown:
        numbered = _give_uids(folder, unknown, builder, found, sizes, relist)
        if numbered is None:
            return Fallback.RELIST
        result += numbered
        if len(found) > len(result):       # numbered by another process meanwhile
            result = sorted(found.values(), key=_by_uid)
    uidlist.keep_messages(result)
    if uidlist.generation == generation and len(result) == sum(len(n) for n in listing.values()):
        sized = sizes or all(m._vsize is not None for m in result)
        uidlist.last_sync = LastSync(generation, keywords, sized,
                                     {sub: frozenset(names) for sub, names in listing.items()},
                                     result, stamp)
    folder.save_sizes_when_due(uidlist, len(records))
    return list(result)


def _give_uids(folder, unknown: dict[str, tuple[str, str]], builder: _MessageBuilder,
               found: dict[str, Message], sizes: bool, relist: bool = False) -> list[Message] | None:
    """UIDs for the unknown files. Returns the Messages of those numbered now, in UID
    order (above every message in found), and adds them to found; files another
    process numbered meanwhile go into found alone (their UIDs may be lower).
    On a full or read-only disk none is numbered: they wait, unseen, for a sync that
    can write, and the messages that have UIDs can still be read.
    relist: None when another process numbered some of them meanwhile (the listing may
    have caught it linking several messages: the caller lists again)."""
    try:
        records, fresh = folder.assign_uids(list(unknown), unknown, sizes)
    except StorageError:
        return []
    if relist and len(fresh) < len(unknown):
        return None
    make = builder.make
    numbered = builder.make_numbered(fresh, unknown, records)
    if len(fresh) < len(unknown):
        for base, (sub, name) in unknown.items():
            if base not in found:
                found[base] = make(base, sub, name, records[base])
    found.update(zip(fresh, numbered))
    return numbered


def patch_last_sync(folder, uidlist: UidList, keywords: tuple, sizes: bool,
                    listing: dict[str, list[str]], stamp: tuple | None,
                    max_new: int | None, relist: bool = False) -> list[Message] | Fallback:
    """The last sync's result patched with what changed in the listing since: a file
    renamed by another process (flags), new mail, a file gone. Fallback.FULL_SYNC when it
    cannot be patched (uidlist rewritten, keywords changed, sizes wanted but not all
    known, records of vanished files to look into). Fallback.DECLINED: more than max_new
    files need UIDs. At 100,000 messages this is set arithmetic on the names instead of
    a lookup per file."""
    last = uidlist.last_sync
    if last is None:
        return Fallback.FULL_SYNC
    generation, sized, last_names, result = last.generation, last.sized, last.names, last.result
    if generation != uidlist.generation or last.keywords != keywords or (sizes and not sized):
        return Fallback.FULL_SYNC
    limit = max(1000, len(result) // 4)     # past it, the full sync is no slower
    if abs(sum(map(len, listing.values())) - sum(map(len, last_names.values()))) > limit:
        return Fallback.FULL_SYNC            # a bulk fill: no sets of 100,000 names to compare
    names = {sub: set(listing[sub]) for sub in ("new", "cur")}
    added = {sub: names[sub] - last_names[sub] for sub in names}
    removed = {sub: last_names[sub] - names[sub] for sub in names}
    if not any(added.values()) and not any(removed.values()):
        uidlist.last_sync = last._replace(stamp=stamp)
        return list(result)
    # Many changes (another process's STORE 1:*): the full sync is no slower.
    if sum(map(len, added.values())) + sum(map(len, removed.values())) > limit:
        return Fallback.FULL_SYNC
    records = uidlist.records
    builder = _MessageBuilder(folder, sizes)
    fresh: dict[str, Message] = {}
    unknown: dict[str, tuple[str, str]] = {}
    for sub in ("new", "cur"):
        for name in added[sub]:
            _place(sub, name, records, builder, fresh, unknown)
    gone_bases = {name.partition(":")[0] for sub in removed for name in removed[sub]}
    if any(b in records and b not in fresh and b not in unknown for b in gone_bases):
        return Fallback.FULL_SYNC   # a record without its file: the full sync looks again, forgets
    if max_new is not None and len(unknown) > max_new:
        return Fallback.DECLINED
    if unknown:
        if _give_uids(folder, unknown, builder, fresh, sizes, relist) is None:
            return Fallback.RELIST
        if uidlist.generation != generation or not unknown.keys() <= fresh.keys():
            return Fallback.FULL_SYNC   # numbered meanwhile, or not at all (a full disk): look again
    kept = [m for m in result if m.base not in fresh]      # a gone file returned above
    merged = kept + sorted(fresh.values(), key=_by_uid)
    if kept and fresh and min(m.uid for m in fresh.values()) < kept[-1].uid:
        merged.sort(key=_by_uid)
    cache = {sub: dict(known) for sub, known in uidlist.message_cache(keywords).items()}
    for sub in removed:
        for name in removed[sub]:
            cache[sub].pop(name, None)
    for msg in fresh.values():
        cache[msg.subdir][msg.filename] = msg
    uidlist.replace_message_cache(cache)
    sized = sized and (sizes or all(m._vsize is not None for m in fresh.values()))
    uidlist.last_sync = LastSync(generation, keywords, sized,
                                 {sub: frozenset(n) for sub, n in names.items()}, merged, stamp)
    return list(merged)


def _recheck_missing(folder, records: dict[str, tuple[int, str]], found: dict[str, Message],
                     unknown: dict[str, tuple[str, str]], builder: _MessageBuilder) -> None:
    """Records without a file: look again (a rename during readdir can hide a file
    once), then forget those really gone."""
    missing = [b for b in records if b not in found and b not in unknown]
    if not missing:
        return
    again = scan(folder.path)
    for base in missing:
        if base in again:
            sub, name = again[base]
            found[base] = builder.make(base, sub, name, records[base])
    gone = [b for b in missing if b not in found]
    if gone:
        folder.forget(gone)


class _MessageBuilder:
    """Makes Message objects for one sync, sharing parsed flag sets."""

    def __init__(self, folder, sizes: bool = True):
        self.sizes = sizes  # read files whose sizes are unknown now (else on first use)
        self._letters: dict[str, str] | None = None
        self._flags: dict[str, frozenset[str]] = {}
        self._uidlist = folder.uidlist
        self._known_sizes = folder.uidlist.sizes     # measured here before (see Message)
        self._path = folder.path

    def make(self, base: str, sub: str, name: str, record: tuple[int, str]) -> Message:
        info = name[len(base) + 1:]
        flags = self._flags.get(info)
        if flags is None:
            if self._letters is None:
                self._letters = letter_map(self._path)
            flags = self._flags[info] = flags_from_info(info, self._letters)
        keys = record[1]
        # Names from other tools carry no sizes, and neither do records a first SELECT
        # wrote: the usual case at 100,000 files, so it skips the parse.
        size, vsize = sizes_from(base, keys) if keys or "," in base else (None, None)
        if size is None or vsize is None:
            known = self._known_sizes.get(base)
            if known is not None:
                size, vsize = known
            elif self.sizes:
                measured = measure(f"{self._path}/{sub}/{name}", size, vsize)
                if measured is None:
                    size, vsize = size or 0, vsize or 0
                else:
                    size, vsize = measured
                    if not keys:
                        self._uidlist.remember_sizes(base, measured)
        return Message(record[0], base, sub, name, flags, size, vsize, self._path)

    def make_numbered(self, bases: list[str], listed: dict[str, tuple[str, str]],
                      records: dict[str, tuple[int, str]]) -> list[Message]:
        """make() for the files just numbered (bases in UID order, consecutive UIDs).
        A file another tool dropped into new/ (no flags, no sizes in its name, none
        known, none to read now) is made without looking it up again by name: at
        100,000 files of a bulk fill the lookups cost more than the Messages."""
        make = self.make
        first = records[bases[0]][0] if bases else 0
        if not bases or self.sizes or records[bases[-1]] != (first + len(bases) - 1, ""):
            return [make(base, *listed[base], records[base]) for base in bases]
        odd = {base for base, (sub, name) in listed.items() if sub != "new" or name != base}
        known, path = self._known_sizes, self._path
        return [make(base, *listed[base], records[base]) if base in odd or "," in base or base in known
                else Message(uid, base, "new", base, _NO_FLAGS, None, None, path)
                for uid, base in zip(range(first, first + len(bases)), bases)]


def _place(sub: str, name: str, records: dict[str, tuple[int, str]], builder: _MessageBuilder,
           found: dict[str, Message], unknown: dict[str, tuple[str, str]]) -> None:
    """A listed file: its Message when it has a uidlist record, else it waits for a UID.
    Dot files are not messages."""
    if name[0] == ".":
        return
    base = name.partition(":")[0]
    record = records.get(base)
    if record is None:
        unknown[base] = (sub, name)
    else:
        found[base] = builder.make(base, sub, name, record)
