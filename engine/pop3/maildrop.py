"""INBOX as POP3 sessions see it: a snapshot taken at login, its sizes and its UIDLs.

UIDL is what Dovecot would give (pop3_uidl_format's default %08Xu%08Xv: UID and
UIDVALIDITY), or the P field of the message's dovecot-uidlist record where it has one
(mail migrated with its old UIDLs); so the UIDLs survive a move to Dovecot and back.

The snapshot's sizes and UIDLs are plain arrays, made once in the thread pool when first
asked for (STAT/LIST, UIDL), and LIST/UIDL format their whole answer with one %-operation
over them: at 100,000 messages a per-message f-string and attribute lookup cost more than
the rest of the command. A snapshot is shared with the next login while new/, cur/ and
dovecot-uidlist are unchanged (the directory-time test IMAP's shared listings use), so a
client polling an unchanged large mailbox does not pay for a sync each time.
"""
from __future__ import annotations

import operator
import time

from .. import folder_cache
from ..maildir import MTIME_SLACK, Maildir, folder_stamp

_vsize_of = operator.attrgetter("vsize")
_uid_of = operator.attrgetter("uid")


class Snapshot:
    """INBOX as sessions see it: the messages of one sync and, made when first asked
    for, their sizes and UIDLs. Never changed once made, so sessions share it."""

    def __init__(self, messages: list, stamp: tuple | None):
        self.messages = messages
        self.stamp = stamp                  # None: not to be reused
        self.sizes: list[int] | None = None     # vsize of messages[i]
        self.total = 0                      # sum(sizes)
        self.uidls: Uidls | None = None
        self.list_body: bytes | None = None  # LIST's lines while nothing is deleted

    def measure(self) -> None:
        """Fill sizes and total (blocking: a size not known yet is read from the file),
        and the lines of LIST, which every session of the snapshot answers alike."""
        sizes = list(map(_vsize_of, self.messages))
        self.list_body = table("%d %d\r\n", range(1, len(sizes) + 1), sizes)
        self.total = sum(sizes)
        self.sizes = sizes


def table(line: str, numbers, values) -> bytes:
    """`line` % (number, value) for each pair, by one %-operation for the whole table
    (line holds exactly two conversions)."""
    pairs = [None] * (2 * len(numbers))
    pairs[0::2] = numbers
    pairs[1::2] = values
    return ((line * len(numbers)) % tuple(pairs)).encode("ascii") if pairs else b""


def _remade_snapshot(folder) -> "Snapshot | None":
    """INBOX's snapshot made again in the background (folder_cache); None unless every
    size is known without reading a file and the sync settled."""
    synced = folder.sync_quietly(folder_cache.QUIET_NEW_UIDS)
    if synced is None or synced.stamp is None or not all(m.sizes_known for m in synced.messages):
        return None
    snapshot = Snapshot(synced.messages, synced.stamp)
    snapshot.measure()
    return snapshot


_SNAPSHOTS = folder_cache.StampedCache(_remade_snapshot)


def open_inbox(md: Maildir):
    """(INBOX, the session's snapshot): the last one when nothing changed since, else a sync."""
    folder = md.folder("INBOX")
    key = str(folder.path)
    started = time.time()
    stamp, newest = folder_stamp(folder.path)
    snapshot = _SNAPSHOTS.get(key, stamp)
    if snapshot is None:
        snapshot = Snapshot(folder.sync(), stamp if started - newest > MTIME_SLACK else None)
        _SNAPSHOTS.put(key, snapshot, folder)
    return folder, snapshot


def _usable_uidl(uidl: str) -> bool:
    # RFC 1939: 1-70 characters in 0x21-0x7E; a kept one that is not is not used
    return 0 < len(uidl) <= 70 and all(0x21 <= ord(c) <= 0x7E for c in uidl)


class Uidls:
    """The UIDLs of a session's messages, by position: UID and UIDVALIDITY as Dovecot
    prints them (%08x%08x), or the record's kept P field where it has a usable one."""

    def __init__(self, folder, messages: list):
        self.validity = f"{folder.uidvalidity():08x}"
        self.uids = list(map(_uid_of, messages))
        fields = folder.record_fields("P")
        kept = {}
        if fields:
            for i, m in enumerate(messages):
                uidl = fields.get(m.base)
                if uidl is not None and _usable_uidl(uidl):
                    kept[i] = uidl
        self.kept: dict[int, str] = kept          # position -> kept UIDL

    def one(self, i: int) -> str:
        uidl = self.kept.get(i)
        return uidl if uidl is not None else f"{self.uids[i]:08x}{self.validity}"

    def all(self) -> list[str]:
        uidls = [f"{uid:08x}{self.validity}" for uid in self.uids]
        for i, uidl in self.kept.items():
            uidls[i] = uidl
        return uidls
