"""The outbound queue on disk (DESIGN.md §4).

queue/messages/<id>.eml   the exact bytes to send; immutable
queue/<state>/<id>.toml   the envelope; state is active, deferred or hold
queue/flush               present: the runner tries every deferred item now (queue flush)

An item exists once its envelope exists. The body is written and fsync'd first, so a
crash leaves at most a body without an envelope, which `sweep_orphans` removes.
Queue ids sort by time.

- The envelope file's mtime is its next attempt time (as Postfix does with deferred
  queue files): the runner finds due items with stat() alone, without parsing.
- A runner claims an item by renaming deferred/<id>.toml to active/<id>.toml; exactly
  one process wins. Before the attempt it sets the active file's mtime to the next
  attempt time and records itself ("host:pid") in the extended attribute
  user.mailctl.claim (or active/<id>.attempt where the file system has no xattrs).
  At start (and while running, for another serving process that died), recover()
  returns active items of runners that are gone to deferred/, due at once: an attempt a
  crash interrupted is counted and retried, never held back by its backoff. An active
  item without a claim changed in the last CLAIM_GRACE_S is left alone while others
  live: its claimer is between the rename and the record (or finishing it); taken back
  then, it would be delivered twice. The outcome (per-recipient status) is written when
  the attempt ends.
- `mailctl queue` changes an envelope by claiming it the same way, so it never races
  a runner.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from . import uniquenames
from .errors import MailError, NotFound
from .root import Root, atomic_write, fsync_dir, write_temp

STATES = ("active", "deferred", "hold")
CLAIM_XATTR = "user.mailctl.claim"
CLAIM_GRACE_S = 60.0      # an unclaimed active item this young is being claimed or finished
RECIPIENT_KEYS = ("address", "status", "code", "reply", "orcpt", "remote", "dsn")
_counter = itertools.count()


def new_id() -> str:
    """Time-sortable and unique across processes and hosts: µs time, pid, counter, random."""
    return f"{time.time_ns() // 1000:014x}{uniquenames.pid() & 0xffff:04x}{next(_counter) & 0xfff:03x}{uniquenames.random_hex(3)}"


def valid_id(qid: str) -> bool:
    return 8 <= len(qid) <= 64 and all(c in "0123456789abcdef" for c in qid)


@dataclass
class Recipient:
    address: str
    status: str = "pending"          # pending, sent, deferred, failed
    code: int = 0
    reply: str = ""
    orcpt: str = ""
    remote: str = ""                 # the host whose reply is in `reply`
    dsn: str = ""                    # "" or "5.1.1"-style enhanced status of the last reply

    def to_dict(self) -> dict:
        return {"address": self.address, "status": self.status, "code": self.code,
                "reply": self.reply, "orcpt": self.orcpt, "remote": self.remote, "dsn": self.dsn}

    @property
    def done(self) -> bool:
        return self.status in ("sent", "failed")

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


@dataclass
class Envelope:
    id: str
    sender: str
    recipients: list[Recipient]
    created: float
    next_attempt: float
    attempts: int = 0
    last_code: int = 0
    last_error: str = ""
    delay_notified: bool = False
    last_attempt: float = 0.0
    claim: str = ""                  # "host:pid" of the runner delivering it (active/ only)
    size: int = 0
    source: str = ""                 # who handed it in: smtp, pickup, sendmail, forward, bounce
    auth_user: str = ""
    state: str = "deferred"
    extra: dict = field(default_factory=dict)
    notice_due: list[str] = field(default_factory=list)   # failed recipients whose DSN is still to write

    @property
    def done(self) -> bool:
        """Nothing left to do: every recipient sent or failed, and every failure notified."""
        return all(r.done for r in self.recipients) and not self.notice_due

    def to_dict(self) -> dict:
        d = {"id": self.id, "sender": self.sender, "created": self.created,
             "next_attempt": self.next_attempt, "attempts": self.attempts,
             "last_code": self.last_code, "last_error": self.last_error,
             "delay_notified": self.delay_notified, "last_attempt": self.last_attempt,
             "claim": self.claim, "size": self.size, "source": self.source,
             "auth_user": self.auth_user,
             "recipients": [r.to_dict() for r in self.recipients]}
        if self.extra:
            d["extra"] = self.extra
        if self.notice_due:
            d["notice_due"] = list(self.notice_due)
        return d

    @classmethod
    def from_dict(cls, d: dict, state: str) -> "Envelope":
        return cls(id=d["id"], sender=d.get("sender", ""),
                   recipients=[Recipient(**{k: r[k] for k in RECIPIENT_KEYS if k in r})
                               for r in d.get("recipients", [])],
                   created=d.get("created", 0.0), next_attempt=d.get("next_attempt", 0.0),
                   attempts=d.get("attempts", 0), last_code=d.get("last_code", 0),
                   last_error=d.get("last_error", ""), delay_notified=d.get("delay_notified", False),
                   last_attempt=d.get("last_attempt", 0.0), claim=d.get("claim", ""),
                   size=d.get("size", 0), source=d.get("source", ""), auth_user=d.get("auth_user", ""),
                   state=state, extra=d.get("extra", {}), notice_due=list(d.get("notice_due", [])))


class Queue:
    def __init__(self, root: Root):
        self.root = root
        self.dir = root.queue_dir
        self.messages = self.dir / "messages"

    def ensure(self) -> None:
        for sub in ("messages", *STATES):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    def body_path(self, qid: str) -> Path:
        return self.messages / f"{qid}.eml"

    def envelope_path(self, qid: str, state: str) -> Path:
        return self.dir / state / f"{qid}.toml"

    # -- adding --
    def stage(self, sender: str, recipients: list[str], data: bytes, source: str = "",
              auth_user: str = "", now: float | None = None) -> "StagedItem":
        """Write and fsync the body; the item appears only on commit()."""
        self.ensure()
        qid = new_id()
        atomic_write(self.body_path(qid), data)
        now = time.time() if now is None else now
        env = Envelope(id=qid, sender=sender, recipients=[Recipient(r) for r in recipients],
                       created=now, next_attempt=now, size=len(data), source=source, auth_user=auth_user)
        try:
            return StagedItem(self, env)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.body_path(qid))
            raise

    def enqueue(self, sender: str, recipients: list[str], data: bytes, **kw) -> str:
        staged = self.stage(sender, recipients, data, **kw)
        staged.commit()
        return staged.envelope.id

    # -- reading and changing --
    def write(self, env: Envelope) -> None:
        # The file's mtime is the next attempt time (as Postfix does with its deferred
        # queue files), so the runner finds due items with stat() alone.
        atomic_write(self.envelope_path(env.id, env.state), tomli_w.dumps(env.to_dict()),
                     mtime=env.next_attempt or None)

    def write_staged(self, env: Envelope) -> Path:
        """The envelope written and fsync'd under a temp name; renaming it into place
        (StagedItem.commit) is what makes the item exist."""
        return write_temp(self.envelope_path(env.id, env.state), tomli_w.dumps(env.to_dict()),
                          mtime=env.next_attempt or None)

    def attempt_path(self, qid: str) -> Path:
        return self.dir / "active" / f"{qid}.attempt"

    def write_attempt(self, env: Envelope) -> None:
        """Record an attempt about to start on the claimed envelope in active/: its mtime
        becomes the next attempt time, and the claiming runner goes into an extended
        attribute (or, where the file system has none, active/<id>.attempt).

        No data is written and nothing is fsync'd: it costs no disk flush per message and
        can never damage the envelope. After a crash, recover() applies it, so a restart
        does not hammer the destination."""
        path = self.envelope_path(env.id, "active")
        os.utime(path, (env.next_attempt, env.next_attempt))
        try:
            os.setxattr(path, CLAIM_XATTR, env.claim.encode())
        except OSError:
            with open(self.attempt_path(env.id), "w", encoding="utf-8") as f:
                f.write(env.claim)

    def read_claim(self, qid: str) -> str:
        path = self.envelope_path(qid, "active")
        try:
            return os.getxattr(path, CLAIM_XATTR).decode("utf-8", "replace")
        except OSError:
            pass
        try:
            return self.attempt_path(qid).read_text("utf-8").strip()
        except OSError:
            return ""

    def _drop_attempt(self, qid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.attempt_path(qid))

    def find(self, qid: str) -> Envelope:
        if not valid_id(qid):
            raise NotFound(f"queue id {qid!r} is not valid (ids are hexadecimal)")
        for state in STATES:
            path = self.envelope_path(qid, state)
            try:
                return Envelope.from_dict(tomllib.loads(path.read_text("utf-8")), state)
            except FileNotFoundError:
                continue
            except (tomllib.TOMLDecodeError, KeyError, TypeError) as e:
                raise MailError(f"queue/{state}/{qid}.toml: damaged envelope ({e}); delete it with "
                                f"'mailctl queue delete {qid}'") from None
        raise NotFound(f"queue id {qid} not found (delivered, deleted or never queued)")

    def move(self, env: Envelope, state: str) -> None:
        """Change state by renaming the envelope (one atomic step)."""
        os.rename(self.envelope_path(env.id, env.state), self.envelope_path(env.id, state))
        fsync_dir(self.dir / state)
        env.state = state

    def remove(self, env: Envelope) -> None:
        """The envelope goes first, so a crash leaves only a body, which sweep removes."""
        if env.state == "active":
            self._drop_attempt(env.id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.envelope_path(env.id, env.state))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.body_path(env.id))

    def read(self, qid: str, state: str) -> Envelope:
        """The envelope of qid in one state (FileNotFoundError when it is not there)."""
        path = self.envelope_path(qid, state)
        try:
            return Envelope.from_dict(tomllib.loads(path.read_text("utf-8")), state)
        except (tomllib.TOMLDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise MailError(f"queue/{state}/{qid}.toml: damaged envelope ({e}); delete it with "
                            f"'mailctl queue delete {qid}'") from None

    def claim(self, qid: str, owner: str) -> Envelope | None:
        """Take a deferred item for delivery by renaming it into active/.

        The rename succeeds for exactly one process, so no two deliver the same item.
        The envelope is read after the rename: what was read before may be stale."""
        try:
            os.rename(self.envelope_path(qid, "deferred"), self.envelope_path(qid, "active"))
        except FileNotFoundError:
            return None
        try:
            env = self.read(qid, "active")
        except MailError:
            # a damaged envelope: park it in hold/ for the admin instead of retrying forever
            with contextlib.suppress(OSError):
                os.rename(self.envelope_path(qid, "active"), self.envelope_path(qid, "hold"))
            raise
        env.claim = owner
        return env

    def finish(self, env: Envelope, state: str = "deferred") -> None:
        """Write the outcome of a delivery attempt and leave active/.

        A `queue hold` or `queue delete` may have moved the envelope while it was being
        delivered; the outcome then goes where it is now (or nowhere, when deleted)."""
        env.claim = ""
        done = env.done
        self._drop_attempt(env.id)
        for where in ("active", "hold"):
            if self.envelope_path(env.id, where).exists():
                env.state = where
                break
        else:
            return  # deleted meanwhile
        if done:
            self.remove(env)
            return
        self.write(env)
        if env.state == "active":
            self.move(env, state)

    def recover(self, owner_alive=None) -> list[str]:
        """Return items left in active/ by a crashed runner to deferred/, due at once.

        owner_alive(claim) -> bool says whether the claiming runner still works on it
        (another process sharing the root); by default every active item is returned."""
        returned = []
        for qid in self.ids("active"):
            claim = self.read_claim(qid)
            if owner_alive is not None and claim and owner_alive(claim):
                continue
            path = self.envelope_path(qid, "active")
            try:
                st = os.stat(path)
                if owner_alive is not None and not claim and st.st_ctime > time.time() - CLAIM_GRACE_S:
                    continue
                marked = st.st_mtime
                env = self.read(qid, "active")
            except FileNotFoundError:
                continue
            except MailError:
                with contextlib.suppress(OSError):
                    os.rename(path, self.envelope_path(qid, "hold"))
                continue
            try:
                if claim and marked > env.next_attempt:
                    # an attempt was under way: count it, and try again at once (as Postfix
                    # does after a crash): only what was in flight can arrive twice
                    env.attempts += 1
                    env.last_attempt = env.next_attempt = time.time()
                    env.last_error = env.last_error or "delivery attempt interrupted (server stopped)"
                    self.write(env)
                os.rename(path, self.envelope_path(qid, "deferred"))
                returned.append(qid)
            except FileNotFoundError:
                continue
            finally:
                self._drop_attempt(qid)
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.dir / "active"):
                if name.endswith(".attempt") and not self.envelope_path(name[:-8], "active").exists():
                    self._drop_attempt(name[:-8])
        if returned:
            fsync_dir(self.dir / "deferred")
        return returned

    def request_flush(self) -> None:
        """Ask the runner to try every deferred item now, even in offline mode."""
        self.ensure()
        atomic_write(self.dir / "flush", str(time.time()))

    def take_flush_request(self) -> bool:
        try:
            os.unlink(self.dir / "flush")
            return True
        except FileNotFoundError:
            return False

    # -- administrative changes (mailctl queue) --
    def edit(self, qid: str, change, final_state: str | None = None) -> Envelope:
        """Change an envelope safely while a runner may be working: claim it by renaming
        it into active/ (as a runner would), change, write, rename to final_state."""
        env = self.find(qid)
        if env.state == "active":
            raise MailError(f"queue item {qid} is being delivered right now; try again in a moment")
        src = env.state
        try:
            os.rename(self.envelope_path(qid, src), self.envelope_path(qid, "active"))
        except FileNotFoundError:
            raise MailError(f"queue item {qid} changed while we looked (delivered or being delivered); "
                            f"try again") from None
        env = self.read(qid, "active")
        try:
            change(env)
            env.claim = ""
            self.write(env)
        finally:
            self.move(env, final_state or src)
        return env

    def hold(self, qid: str) -> Envelope:
        env = self.find(qid)
        if env.state == "hold":
            return env
        try:
            self.move(env, "hold")      # an active item's attempt finishes, then it stays held
        except FileNotFoundError:
            raise MailError(f"queue item {qid} changed while we looked; try again") from None
        return env

    def release(self, qid: str, now: float | None = None) -> Envelope:
        """Move a held item back to deferred, due now."""
        return self._due_now(qid, "hold", "deferred", now)

    def retry(self, qid: str, now: float | None = None) -> Envelope:
        """Make a deferred item due now (a held item stays held until released)."""
        return self._due_now(qid, "deferred", None, now)

    def _due_now(self, qid: str, only_in: str, to_state: str | None, now: float | None) -> Envelope:
        now = time.time() if now is None else now
        env = self.find(qid)
        if env.state != only_in:
            return env

        def change(e):
            e.next_attempt = now
        return self.edit(qid, change, to_state)

    def delete(self, qid: str) -> Envelope:
        env = self.find(qid)
        self.remove(env)
        return env

    def ids(self, state: str) -> list[str]:
        try:
            names = os.listdir(self.dir / state)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".toml") and valid_id(n[:-5]))

    def all(self) -> list[Envelope]:
        out = []
        for state in STATES:
            for qid in self.ids(state):
                with contextlib.suppress(NotFound, MailError):
                    out.append(self.find(qid))
        return sorted(out, key=lambda e: e.id)

    def count(self) -> int:
        return sum(len(self.ids(s)) for s in STATES)

    def sweep_orphans(self, older_than: float = 3600.0, keep: set[str] = frozenset()) -> int:
        """Remove bodies with no envelope (a crash between body and envelope write), and
        envelopes staged under a temp name but never committed; `keep` are ids whose
        envelope a pending commit will still write."""
        live = {qid for s in STATES for qid in self.ids(s)} | set(keep)
        removed = 0
        cutoff = time.time() - older_than
        for state in STATES:
            with contextlib.suppress(FileNotFoundError):
                for e in os.scandir(self.dir / state):
                    if e.name.startswith(".") and e.name.endswith(".tmp") and e.stat().st_mtime < cutoff:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(e.path)
                            removed += 1
        try:
            entries = list(os.scandir(self.messages))
        except FileNotFoundError:
            return removed
        for e in entries:
            qid = e.name[:-4]
            if e.name.endswith(".eml") and qid not in live and e.stat().st_mtime < cutoff:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(e.path)
                    removed += 1
        return removed


class StagedItem:
    """A queue item with its body and envelope on disk, not yet visible. Both are written
    when it is staged, so committing it needs no room on the disk: only a rename."""

    def __init__(self, queue: Queue, envelope: Envelope):
        self.queue, self.envelope = queue, envelope
        self.staged_envelope = queue.write_staged(envelope)

    def commit(self) -> str:
        target = self.queue.envelope_path(self.envelope.id, self.envelope.state)
        os.replace(self.staged_envelope, target)
        fsync_dir(target.parent)
        return self.envelope.id

    def abort(self) -> None:
        for path in (self.staged_envelope, self.queue.body_path(self.envelope.id)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def withdraw(self) -> None:
        """Take back a committed item whose message is failing as a whole (delivery.py:
        another item of the same message could not be committed); nobody was told of it."""
        for path in (self.queue.envelope_path(self.envelope.id, self.envelope.state),
                     self.queue.body_path(self.envelope.id)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
