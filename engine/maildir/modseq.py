"""mailctl-modseq: a folder's mod-sequences (RFC 7162 CONDSTORE and QRESYNC), shared by
every serving process on the tree and kept across restarts.

The file names are the truth of a message's flags; this file only remembers, per UID,
the flag letters it last saw and the mod-sequence it gave them. A message whose letters
differ from the recorded ones (our STORE, another mailctl process, Dovecot, mutt, a file
renamed by hand) gets the next mod-sequence when next looked at (observe); so does a
message never seen, and a UID that left the folder is logged as expunged with one, so
QRESYNC can answer VANISHED (EARLIER). Sessions that never ask about mod-sequences pay
nothing: nobody needs to record a change before someone asks.

Format: the line "mailctl-modseq 1 <uidvalidity> <floor>", then lines appended, one
write() per change under an exclusive flock() of the file:
    "<modseq> <uid> =<letters>"   the message has these flag letters since modseq
    "<modseq> -<uid>"             the message was expunged at modseq
floor: no expunge at or below it is logged (the log was cut, or the file made anew),
and no message has a lower mod-sequence. The file is rewritten (temp file + rename)
when most of it is superseded lines. A missing, damaged or foreign file (another
UIDVALIDITY) is made anew with a floor from the clock in microseconds, above any
mod-sequence given before: every message then gets a new one, clients refetch their
flags, and nothing fails.
"""
from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Iterable, NamedTuple

from .. import nofollow
from ..storage_errors import is_storage_fault
from .message import Message
from .names import FILE_MODE, MODSEQS

MAGIC = "mailctl-modseq 1"
EXPUNGES_KEPT = 100_000      # expunge records kept at a rewrite (the oldest are cut)
REWRITE_SLACK = 4096         # superseded lines tolerated beyond the live ones


class Vanished(NamedTuple):
    uids: list[int]          # expunged after the mod-sequence asked about
    complete: bool           # False: the log was cut after it (some may be missing)


class _State:
    """This process's copy of one folder's file, read as far as it was appended."""

    def __init__(self):
        self.lock = threading.Lock()      # threads of this process, beside the flock
        self.reset(0, 0)
        self.ino = None
        self.offset = 0

    def reset(self, uidvalidity: int, floor: int) -> None:
        self.uidvalidity = uidvalidity
        self.floor = floor
        self.highest = floor
        self.modseq: dict[int, int] = {}
        self.letters: dict[int, str] = {}
        self.expunged: dict[int, int] = {}
        self.lines = 0
        self.valid = False

    def parse(self, data: bytes) -> bool:
        """Apply appended lines; False when the text is damaged (made anew then)."""
        end = data.rfind(b"\n")
        if end < 0:
            return True           # a line being written: read again with the rest
        lines = data[:end].decode("ascii", "replace").split("\n")
        self.offset += end + 1
        start = 0
        if not self.valid:
            head = lines[0].split() if lines else []
            if len(head) != 4 or " ".join(head[:2]) != MAGIC or not (head[2] + head[3]).isdigit():
                return False
            self.reset(int(head[2]), int(head[3]))
            self.valid = True
            start = 1
        modseq, letters, expunged = self.modseq, self.letters, self.expunged
        for line in lines[start:]:
            parts = line.split(" ")
            try:
                n, uid = int(parts[0]), int(parts[1])
            except (ValueError, IndexError):
                return False
            if uid < 0:
                expunged[-uid] = n
                modseq.pop(-uid, None)
                letters.pop(-uid, None)
            elif len(parts) == 3 and parts[2][:1] == "=":
                modseq[uid] = n
                letters[uid] = parts[2][1:]
            else:
                return False
            if n > self.highest:
                self.highest = n
        self.lines += len(lines) - start
        return True


_STATES: dict[str, _State] = {}
_STATES_LOCK = threading.Lock()


def _state(path: Path) -> _State:
    key = str(path)
    with _STATES_LOCK:
        state = _STATES.get(key)
        if state is None:
            state = _STATES[key] = _State()
        return state


def letters_of(msg: Message) -> str:
    """What a flag change alters in a file's name: the info after "<base>:2," ("" in new/)."""
    info = msg.filename[len(msg.base) + 1:]
    return info[2:] if info.startswith("2,") else info


def _clock_floor(state: _State) -> int:
    return max(time.time_ns() // 1000, state.highest + 1)


class ModSeqStore:
    """The file opened and flocked, and the state brought up to date with it: what is
    done inside one `with` is one step for every other process (STORE UNCHANGEDSINCE
    checks and changes under it)."""

    def __init__(self, folder_path: Path, uidvalidity: int):
        self.path = folder_path / MODSEQS
        self.uidvalidity = uidvalidity
        self.state = _state(folder_path)
        self.fd = -1

    def __enter__(self) -> ModSeqStore:
        self.state.lock.acquire()
        try:
            self._open()
        except BaseException:
            self.state.lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.fd >= 0:
                os.close(self.fd)        # and the flock with it
        finally:
            self.state.lock.release()

    def _open(self) -> None:
        for _ in range(20):
            fd = nofollow.open_file(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, FILE_MODE)
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            try:
                same = os.stat(self.path).st_ino == st.st_ino
            except FileNotFoundError:
                same = False
            if same:          # not replaced by another process's rewrite while we waited
                self.fd = fd
                break
            os.close(fd)
        else:
            raise OSError(f"{MODSEQS} keeps being replaced")
        state = self.state
        if state.ino != st.st_ino or st.st_size < state.offset:
            state.ino, state.offset = st.st_ino, 0
            state.valid = False
        ok = True
        if st.st_size > state.offset:
            ok = state.parse(os.pread(self.fd, st.st_size - state.offset, state.offset))
        if not ok or not state.valid or state.uidvalidity != self.uidvalidity:
            state.reset(self.uidvalidity, _clock_floor(state))
            self.rewrite()

    def append(self, lines: list[str]) -> None:
        data = "".join(lines).encode()
        try:
            os.write(self.fd, data)
        except OSError as e:
            if not is_storage_fault(e):
                raise
            return      # a full disk: the change is found again at the next look
        self.state.offset += len(data)
        self.state.lines += len(lines)

    def rewrite(self) -> None:
        """The file made again from the state (temp file + rename): a fresh file, or
        one that is mostly superseded lines. The oldest expunges past EXPUNGES_KEPT go."""
        state = self.state
        if len(state.expunged) > EXPUNGES_KEPT:
            by_age = sorted(state.expunged.items(), key=lambda item: item[1])
            cut = by_age[:len(by_age) - EXPUNGES_KEPT]
            state.floor = max(state.floor, cut[-1][1])
            for uid, _ in cut:
                del state.expunged[uid]
        lines = [f"{MAGIC} {state.uidvalidity} {state.floor}\n"]
        lines += [f"{n} -{uid}\n" for uid, n in state.expunged.items()]
        lines += [f"{n} {uid} ={state.letters[uid]}\n" for uid, n in state.modseq.items()]
        data = "".join(lines).encode()
        tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            fd = nofollow.open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as e:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if not is_storage_fault(e):
                raise
            return
        # The new file is ours under the old one's lock: the lock moves to it.
        fd = nofollow.open_file(self.path, os.O_RDWR | os.O_APPEND, FILE_MODE)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.close(self.fd)
        self.fd = fd
        state.ino, state.offset, state.lines, state.valid = os.fstat(fd).st_ino, len(data), len(lines) - 1, True


    # -- what is asked of the file, under the lock --
    def observe(self, msgs: Iterable[Message], known_uids=None) -> tuple[int, dict[int, int]]:
        """Record what changed in msgs since last looked at, and return (the folder's
        highest mod-sequence, {uid: mod-sequence} of msgs). Messages whose letters differ
        from the recorded ones get the next mod-sequence (one for all of them).

        known_uids: given when msgs is a whole fresh listing of the folder: a callable
        giving the UIDs the uidlist lists now (called under our lock, so after any
        writer that recorded a message here numbered it). A recorded UID missing from
        msgs and from those is logged as expunged; one the uidlist still lists was
        numbered after the listing was made, and is not gone."""
        msgs = list(msgs)
        state = self.state
        letters, expunged = state.letters, state.expunged
        changed = []
        listed_recorded = 0
        for m in msgs:
            now, old = letters_of(m), letters.get(m.uid)
            if old is not None:
                listed_recorded += 1
            if old != now and m.uid not in expunged:
                changed.append((m.uid, now))
        gone: set[int] = set()
        if known_uids is not None and len(letters) > listed_recorded:
            listed = {m.uid for m in msgs}
            missing = [u for u in letters if u not in listed]
            still = known_uids()
            gone = {u for u in missing if u not in still}
        if changed or gone:
            n = state.highest + 1
            lines = [f"{n} -{uid}\n" for uid in sorted(gone)]
            lines += [f"{n} {uid} ={now}\n" for uid, now in changed]
            for uid in gone:
                expunged[uid] = n
                del state.modseq[uid], letters[uid]
            for uid, now in changed:
                state.modseq[uid] = n
                letters[uid] = now
            state.highest = n
            self.append(lines)
            if state.lines > 2 * (len(letters) + len(expunged)) + REWRITE_SLACK:
                self.rewrite()
        modseq, top = state.modseq, state.highest
        return top, {m.uid: modseq.get(m.uid, top) for m in msgs}

    def touch(self, uids: Iterable[int]) -> int:
        """Give these UIDs the next mod-sequence with their letters unchanged: a change
        kept elsewhere (a user's private \\Seen, seenrecord.py). Unrecorded ones get one
        at their first look anyway. The new highest."""
        state = self.state
        uids = [u for u in uids if u in state.letters]
        if uids:
            n = state.highest + 1
            for uid in uids:
                state.modseq[uid] = n
            state.highest = n
            self.append([f"{n} {uid} ={state.letters[uid]}\n" for uid in uids])
        return state.highest

    def record_expunged(self, uids: Iterable[int]) -> int:
        """Log UIDs this process just expunged (one new mod-sequence); the new highest."""
        state = self.state
        uids = [u for u in uids if u not in state.expunged]
        if uids:
            n = state.highest + 1
            for uid in uids:
                state.expunged[uid] = n
                state.modseq.pop(uid, None)
                state.letters.pop(uid, None)
            state.highest = n
            self.append([f"{n} -{uid}\n" for uid in uids])
        return state.highest

    def vanished_since(self, since: int) -> Vanished:
        """UIDs expunged at a mod-sequence above since (QRESYNC's VANISHED (EARLIER))."""
        state = self.state
        return Vanished(sorted(u for u, n in state.expunged.items() if n > since), since >= state.floor)

    @property
    def highest(self) -> int:
        return self.state.highest
