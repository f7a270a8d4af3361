"""The selected folder as one IMAP session sees it: messages in sequence order, the
session's \\Recent set, and the differences against the disk that become untagged
EXISTS / EXPUNGE / FETCH responses (RFC 3501 §7.3, §7.4). A message expunged by another
session stays numbered, as a ghost, until the session may send EXPUNGE (§7.4.1: not
while answering FETCH, STORE or SEARCH).

Blocking methods (load, poll, ...) run in the runtime's thread pool. A rescan is skipped
while new/, cur/ and dovecot-uidlist are unchanged, so an idle 100,000-message folder
costs three stat() calls per poll.
"""
from __future__ import annotations

import bisect
import operator
import os
import time
from dataclasses import dataclass, replace

from .. import folder_cache
from .. import maildir as store
from .. import storage_errors
from ..acl import rights as rightsmod
from .condstore import uid_set

CLAIM_LIMIT = 5000
_UID = operator.attrgetter("uid")


def session_flags(msg: store.Message, recent: bool) -> frozenset[str]:
    """A message's flags as a session reports them: with \\Recent when recent to it."""
    return msg.flags | {"\\Recent"} if recent else msg.flags


_FLAG_LISTS: dict[frozenset, str] = {}


def flag_list(flags) -> str:
    """'(\\Seen $Label)': system flags first. Folders use few distinct flag sets, so
    the text of each is remembered (bounded)."""
    key = flags if isinstance(flags, frozenset) else frozenset(flags)
    text = _FLAG_LISTS.get(key)
    if text is None:
        text = "(" + " ".join(sorted(key, key=lambda f: (not f.startswith("\\"), f.lower()))) + ")"
        if len(_FLAG_LISTS) > 4096:
            _FLAG_LISTS.clear()
        _FLAG_LISTS[key] = text
    return text


SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", store.FORWARDED)


def mailbox_flag_lines(keywords, readonly: bool, rights=rightsmod.ALL) -> list[bytes]:
    """FLAGS and PERMANENTFLAGS for a folder with these keywords (SELECT, and again
    when a keyword appears while it is selected); PERMANENTFLAGS only those the
    session's ACL rights let it store."""
    flags = list(SYSTEM_FLAGS) + sorted(set(keywords) - set(SYSTEM_FLAGS))
    perm = "" if readonly else " ".join(rightsmod.storable_flags(flags, rights) + (["\\*"] if "w" in rights else []))
    return [f"* FLAGS ({' '.join(flags)})\r\n".encode(),
            f"* OK [PERMANENTFLAGS ({perm})] Flags permitted\r\n".encode()]


@dataclass(frozen=True)
class Listing:
    """A settled scan of a folder and what SELECT reports of it, shared by this process's
    sessions: a SELECT of a folder nobody changed since costs three stat() calls."""
    stamp: tuple
    msgs: list
    uids: list
    uidvalidity: int
    claimable: bool               # some could be moved to cur/ (a read-only scan left them)
    first_unseen: int | None      # sequence number


def _listing_of(stamp: tuple, msgs: list, uids: list, uidvalidity: int) -> Listing:
    fresh = sum(1 for m in msgs if m.subdir == "new" and not m.flags)
    return Listing(stamp, msgs, uids, uidvalidity, 0 < fresh <= CLAIM_LIMIT,
                   next((i for i, m in enumerate(msgs, 1) if "\\Seen" not in m.flags), None))


def _remade_listing(folder: store.Folder) -> Listing | None:
    """A folder's listing made again in the background (folder_cache), as a read-only
    SELECT would see it; None when it could not be made cheaply and settled."""
    synced = folder.sync_quietly(folder_cache.QUIET_NEW_UIDS)
    if synced is None or synced.stamp is None:
        return None
    stamp, msgs = synced
    return _listing_of(stamp, msgs, [m.uid for m in msgs], folder.uidvalidity())


_LISTINGS = folder_cache.StampedCache(_remade_listing)


class Selected:
    def __init__(self, folder: store.Folder, readonly: bool):
        self.folder = folder
        self.readonly = readonly
        self.msgs: list[store.Message] = []
        self.uids: list[int] = []
        self.recent: set[int] = set()
        # False for an IMAP4rev2 session (imap/rev2.py): messages are still claimed, so
        # rev1 sessions see \Recent as before, but this one is told of none.
        self.reports_recent = True
        self._stamp = None
        self._settled = False
        self.uidvalidity = 0
        self.listing: Listing | None = None  # what load() found, until the first change
        self._shared_lists = False  # msgs and uids are the listing's: copied before a change
        # Pending expunges (RFC 3501 §7.4.1): UIDs of messages gone from the disk that stay
        # in msgs, at their sequence numbers, until a command that may send EXPUNGE.
        self.ghosts: set[int] = set()
        self.rescan_due = False     # a command found a message's file gone: look again after it
        self.keywords: frozenset[str] = frozenset()   # those the client was told of in FLAGS
        self._disk_keywords: frozenset[str] = frozenset()   # those the last scan found
        self._recent_seen = -1   # the highest UID looked at for \\Recent; -1: not yet looked
        # CONDSTORE (RFC 7162): once enabled, each scan records what changed in the
        # folder's mailctl-modseq; modseqs are those this session reported, by UID.
        self.condstore = False
        self.qresync = False      # QRESYNC enabled: VANISHED instead of EXPUNGE
        self.modseqs: dict[int, int] = {}
        self.highestmodseq = 0
        self._observed: tuple[int, dict[int, int]] | None = None   # what the last scan found
        self.access = None              # its imap.access.Mailbox (SELECT sets it)
        self.rights = rightsmod.ALL     # this session's ACL rights on it, as last checked

    # -- blocking part (worker thread) -------------------------------------------
    def _stat_stamp(self):
        stamp, newest = store.folder_stamp(self.folder.path)
        if self.folder.private_seen:     # the user's own \Seen record changes it too
            stamp = (stamp, self.folder.seen_stamp())
        return stamp, newest

    def unchanged(self) -> bool:
        """What scan() would say without a trip to a worker thread: True when it would
        return None (the stamp of the last settled scan still holds). Three lstat()
        calls, cheap enough for the event loop, so a command that changed nothing here
        (LIST, STATUS of another folder...) pays no trip for its updates."""
        return self._settled and self._stamp is not None and self._stat_stamp()[0] == self._stamp

    def scan(self) -> tuple[list[store.Message], set[int]] | None:
        """A fresh listing and the UIDs that just became \\Recent to this session, or
        None when nothing can have changed since the last scan."""
        started = time.time()
        stamp, newest = self._stat_stamp()
        if stamp == self._stamp and self._settled:
            return None
        msgs = self.folder.sync(sizes=False)  # RFC822.SIZE is read when asked for
        self.uidvalidity = self.folder.uidlist.uidvalidity   # refreshed by the sync
        recent = self._claim_recent(msgs)     # before the move: without mailctl-recent, new/ tells
        moved: set[int] = set()
        if not self.readonly:
            msgs = self._claim_new(msgs, moved)
            if moved:
                stamp, newest = self._stat_stamp()
                started = time.time()
        self._stamp = stamp
        # Directory times come from a coarse clock: a change in the same tick as the
        # newest one we saw would leave the times unchanged. Once a scan began well
        # after the newest change, any later change shows as a new time.
        self._settled = started - newest > store.MTIME_SLACK
        self._disk_keywords = self.read_keywords()
        if self.condstore:
            self._observed = self.folder.observe_modseqs(msgs, complete=True)
        return msgs, recent

    def start_modseqs(self) -> None:
        """(worker thread) CONDSTORE enabled: the mod-sequences of the messages as known."""
        self.highestmodseq, self.modseqs = self.folder.observe_modseqs(self.msgs, complete=True)
        self.condstore = True

    def modseq_of(self, uid: int) -> int:
        return self.modseqs.get(uid, self.highestmodseq)

    def note_modseqs(self, highest: int, modseqs: dict[int, int]) -> None:
        """Mod-sequences of our own changes (STORE, \\Seen set by FETCH): not echoed later."""
        self.modseqs.update(modseqs)
        self.highestmodseq = max(self.highestmodseq, highest)

    def _claim_recent(self, msgs: list[store.Message]) -> set[int]:
        """The UIDs recent to this session among those it sees for the first time: the
        first session to see a message claims it (maildir/recent.py), whether it was
        delivered into new/ or copied or appended into cur/ by another session."""
        top = msgs[-1].uid if msgs else 0
        if top <= self._recent_seen:
            return set()
        fresh = msgs[bisect.bisect_right(msgs, self._recent_seen, key=_UID):]
        claimed = store.claim_recent(self.folder.path, self.uidvalidity, fresh, top, not self.readonly)
        self._recent_seen = top
        return claimed

    def _claim_new(self, msgs: list[store.Message], claimed: set[int]) -> list[store.Message]:
        """Move new/ messages to cur/ (as Dovecot does); claimed: the UIDs moved.

        A message in new/ has no flags yet, so the move is one rename to "<base>:2,".
        When more than CLAIM_LIMIT wait in new/ (a bulk import), none are moved, and no
        command pays for a hundred thousand renames (which session they are \\Recent
        to is decided alike, by _claim_recent)."""
        fresh = [m for m in msgs if m.subdir == "new" and not m.flags]
        if not fresh or len(fresh) > CLAIM_LIMIT:
            return msgs
        cur = self.folder.path / "cur"
        moved: dict[int, store.Message] = {}
        for m in fresh:
            filename = m.base + ":2,"
            try:
                os.rename(m.path, cur / filename)
            except FileNotFoundError:
                continue  # someone else moved it meanwhile; the next scan sees where
            except OSError as e:
                if not storage_errors.is_storage_fault(e):
                    raise
                break     # a read-only disk: they stay in new/, and SELECT works
            moved[m.uid] = replace(m, subdir="cur", filename=filename)
            claimed.add(m.uid)
        return [moved.get(m.uid, m) for m in msgs]

    def _reported(self, claimed: set[int]) -> set[int]:
        return claimed if self.reports_recent else set()

    def is_recent(self, m: store.Message) -> bool:
        return m.uid in self.recent

    def recent_count(self) -> int:
        return len(self.recent)

    def load(self) -> None:
        key = str(self.folder.path)
        stamp, _ = self._stat_stamp()
        shared = None if self.folder.private_seen else _LISTINGS.get(key, stamp)
        if shared is not None and (self.readonly or not shared.claimable):
            # Unchanged since another session's settled scan: nothing to move or reread.
            self._stamp, self._settled = stamp, True
            self.msgs, self.uids = shared.msgs, shared.uids
            self._shared_lists = True
            self.uidvalidity = shared.uidvalidity
            self.listing = shared
            self.recent = self._reported(self._claim_recent(shared.msgs))
            return
        self._stamp = None
        msgs, claimed = self.scan()
        self.msgs = msgs
        self.uids = [m.uid for m in msgs]
        self.recent = self._reported(claimed)
        self.listing = None
        self._shared_lists = False
        if self._settled and not self.folder.private_seen:   # the listing is the owner's view
            self._shared_lists = True
            self.listing = _listing_of(self._stamp, msgs, self.uids, self.uidvalidity)
            _LISTINGS.put(key, self.listing, self.folder)

    def own_lists(self) -> None:
        """Before changing msgs or uids in place: stop sharing them with the listing."""
        if self._shared_lists:
            self.msgs, self.uids = list(self.msgs), list(self.uids)
            self._shared_lists = False
        self.listing = None

    def first_unseen(self) -> int | None:
        """Sequence number of the first message without \\Seen."""
        if self.listing is not None:
            return self.listing.first_unseen
        return next((i for i, m in enumerate(self.msgs, 1) if "\\Seen" not in m.flags), None)

    def uidnext(self) -> int:
        return self.folder.uidnext()

    def renamed(self, folder: store.Folder) -> None:
        """This session renamed the folder (RENAME of the selected mailbox, or of a parent):
        the same messages, UIDs and \\Recent set, now under the folder's new path."""
        self.folder = folder
        self.msgs = [replace(m, folder_path=folder.path) for m in self.msgs]
        self.uids = list(self.uids)
        self._shared_lists = False
        self.listing = None
        self._stamp = None

    # -- the folder's keywords (FLAGS, PERMANENTFLAGS) ----------------------------------
    def read_keywords(self) -> frozenset[str]:
        """(worker thread) The folder's keywords now."""
        return frozenset(store.read_keywords(self.folder.path).values())

    def flag_lines(self, keywords: frozenset[str]) -> list[bytes]:
        """SELECT's FLAGS and PERMANENTFLAGS; the keywords are now known to the client."""
        self.keywords = keywords
        return mailbox_flag_lines(keywords, self.readonly, self.rights)

    def unannounced(self, flag_sets) -> bool:
        """Whether any of these flag sets holds a keyword the client was not told of."""
        told = self.keywords
        return any(f not in told and f not in SYSTEM_FLAGS for flags in set(flag_sets) for f in flags)

    def keyword_updates(self, keywords: frozenset[str]) -> list[bytes]:
        """FLAGS and PERMANENTFLAGS again when keywords appeared since the client was
        told, to go before any FETCH or EXISTS that shows one (RFC 3501 §7.2.6)."""
        if keywords <= self.keywords:
            return []
        return self.flag_lines(self.keywords | keywords)

    # -- event-loop part -----------------------------------------------------------
    def apply(self, scanned, expunge: bool = True) -> list[bytes]:
        """Adopt a new listing (a scan() result); the untagged responses that tell the client.

        With expunge False (after FETCH, STORE or SEARCH, RFC 3501 §7.4.1) the messages gone
        from the disk stay in the map as ghosts, so the client's sequence numbers hold; a
        later call with expunge True announces them."""
        self.rescan_due = False
        if scanned is None:
            return self._expunge_ghosts() if expunge else []
        fresh, claimed = scanned
        old_modseqs, observed, self._observed = self.modseqs, self._observed, None
        if observed is not None:
            self.highestmodseq, self.modseqs = observed
        if not claimed and len(fresh) == len(self.msgs) and all(map(operator.is_, fresh, self.msgs)) \
                and self.modseqs == old_modseqs:
            return []   # the same messages: the rescan followed a change of sizes in the uidlist
        self.listing = None
        lines = self.keyword_updates(self._disk_keywords)   # before a FETCH or EXISTS shows one
        by_uid = {m.uid: m for m in fresh}
        if expunge:
            # Expunged: announce from the highest sequence number down, so each stays valid.
            lines += self.expunge_lines([seq for seq in range(len(self.msgs), 0, -1)
                                         if self.msgs[seq - 1].uid not in by_uid])
            kept = [m for m in self.msgs if m.uid in by_uid]
            self.ghosts = set()
        else:
            kept = self.msgs
            self.ghosts = {m.uid for m in kept if m.uid not in by_uid}
        known_max = self.uids[-1] if self.uids else 0
        condstore = observed is not None
        for seq, old in enumerate(kept, 1):
            new = by_uid.get(old.uid, old)
            if new.flags != old.flags or (condstore and self.modseqs.get(old.uid) != old_modseqs.get(old.uid)
                                          and old.uid in by_uid):
                flags = flag_list(session_flags(new, self.is_recent(new))).encode()
                if condstore:   # RFC 7162 §3.1: UID and MODSEQ in every FETCH a change causes
                    lines.append(b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n"
                                 % (seq, new.uid, flags, self.modseq_of(new.uid)))
                else:
                    lines.append(b"* %d FETCH (UID %d FLAGS %s)\r\n" % (seq, new.uid, flags))
        added = [m for m in fresh if m.uid > known_max]
        self.msgs = [by_uid.get(m.uid, m) for m in kept] + added
        self.uids = [m.uid for m in self.msgs]
        self._shared_lists = False
        self.recent = {u for u in self.recent if u in by_uid or u in self.ghosts} | self._reported(claimed)
        if added:
            lines.append(b"* %d EXISTS\r\n" % len(self.msgs))
            if self.reports_recent:
                lines.append(b"* %d RECENT\r\n" % self.recent_count())
        return lines

    def _expunge_ghosts(self) -> list[bytes]:
        """EXPUNGE for the ghosts (highest number first), and the map without them."""
        if not self.ghosts:
            return []
        lines = self.expunge_lines([seq for seq in range(len(self.msgs), 0, -1)
                                    if self.msgs[seq - 1].uid in self.ghosts])
        self.own_lists()
        self.msgs = [m for m in self.msgs if m.uid not in self.ghosts]
        self.uids = [m.uid for m in self.msgs]
        self.recent -= self.ghosts
        self.ghosts = set()
        return lines

    def expunge_lines(self, seqs: list[int]) -> list[bytes]:
        """What tells the client these messages (highest sequence number first) are
        gone: EXPUNGE each, or with QRESYNC one VANISHED of their UIDs (RFC 7162 §3.2.10)."""
        if not seqs:
            return []
        if self.qresync:
            return [b"* VANISHED %s\r\n" % uid_set(sorted(self.msgs[s - 1].uid for s in seqs)).encode()]
        return [b"* %d EXPUNGE\r\n" % seq for seq in seqs]

    def is_ghost(self, msg: store.Message) -> bool:
        """Gone from the disk, still numbered for the client (see apply)."""
        return msg.uid in self.ghosts

    def note_vanished(self) -> None:
        """A command found a message's file gone: the next scan reads the folder again
        (its directory times may not show it yet) and dispatch announces after the command."""
        self._settled = False
        self.rescan_due = True

    def replace(self, msg: store.Message) -> None:
        """Our own change (STORE) to a message: remember it, so it is not echoed."""
        i = bisect.bisect_left(self.uids, msg.uid)
        if i < len(self.uids) and self.uids[i] == msg.uid:
            self.own_lists()
            self.msgs[i] = msg

    def seqs_for(self, matcher_ranges, uid: bool) -> list[int]:
        """Sequence numbers selected by a sequence set (of UIDs when uid is True)."""
        from .parser import SequenceMatcher
        if not self.msgs:
            return []
        if uid:
            sm = SequenceMatcher(matcher_ranges, self.uids[-1])
            return [i + 1 for i in sm.select(self.uids)]
        sm = SequenceMatcher(matcher_ranges, len(self.msgs))
        return [n for n in range(1, len(self.msgs) + 1) if n in sm] if len(sm.ranges) > 50 else \
            sorted({n for a, b in sm.ranges for n in range(max(a, 1), min(b, len(self.msgs)) + 1)})
