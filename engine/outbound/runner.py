"""The queue runner: delivers queued mail, retries, bounces.

One pass: list deferred/ (an mtime cache avoids re-reading unchanged envelopes), pick the
items that are due, claim each by renaming it into active/ (exactly one process wins),
write the next attempt time *before* the attempt (as Mox does: a crash never makes us
hammer a server), deliver each destination domain in transactions of at most
queue.max_recipients_per_transaction recipients, record a status per recipient
(2xx sent, 4xx deferred, 5xx failed), send DSNs, and rename the envelope back to
deferred/ (or remove the item when every recipient is done).

Items in active/ at start were left by a crash: they go back to deferred/.
Delivery to one destination (MX walk, transaction) is destination.py's; the connection
pool and the rate limit are pool.py's; this module schedules.

A full or read-only disk (ENOSPC, EDQUOT, EROFS) loses nothing and sends nothing twice:
an outcome that cannot be written is kept for a later pass (outcomes.py); an item whose
attempt record cannot be written goes back to deferred/ untried; a notice that cannot be
written is owed (Envelope.notice_due) and written at the item's next attempt, so the
item is not removed before it is.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

from .. import diskspace
from ..storage_errors import is_storage_fault
from ..queue import Envelope, Queue, Recipient
from ..locks import pid_alive
from . import dkim, dsn, mx, wakeup
from .outcomes import Outcomes
from .client import to_wire
from .destination import Deliverer
from .pool import ConnectionPool, RateLimit
from .routes import Router

log = logging.getLogger("mailctl.queue")

POLL_SECONDS = 1.0
RECOVER_EVERY_S = 5.0     # how often items claimed by a process that died meanwhile are taken back


def no_pending_bodies(root) -> set[str]:
    return set()


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _other_owner_alive(claim: str) -> bool:
    """While this runner works: its own claims are alive (in flight, or an outcome the disk
    could not take yet); another process's only while that process is."""
    return claim == owner_id() or _owner_alive(claim)


def _owner_alive(claim: str) -> bool:
    host, _, pid = claim.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False        # another host: its runner returns its own items on restart
    if int(pid) == os.getpid():
        return False        # our own claim from before a restart of this worker
    return pid_alive(int(pid))


# -- helpers -----------------------------------------------------------------------

def schedule_delay(retry_minutes, attempt: int) -> float:
    """Seconds to wait before attempt number `attempt` (0-based); the last interval repeats."""
    seq = list(retry_minutes) or [60]
    return float(seq[min(attempt, len(seq) - 1)]) * 60.0


# -- the runner -------------------------------------------------------------------

class Runner:
    """keep_bodies(root): ids of queue items another part of the server will still commit
    (pickup's markers); the start-up sweep of bodies without an envelope keeps them."""

    def __init__(self, runtime, clock=None, keep_bodies=no_pending_bodies):
        self.runtime = runtime
        self.root = runtime.root
        self.queue = Queue(runtime.root)
        self.clock = clock or getattr(runtime, "clock", time.time)
        self.owner = owner_id()
        self.keep_bodies = keep_bodies
        self.pool = ConnectionPool()
        self.rate = RateLimit()
        self.deliverer = Deliverer(runtime, self.pool, self.blocking)
        self.cache: dict[str, tuple[int, float, str]] = {}     # id -> (mtime_ns, next_attempt, "")
        self.inflight: set[str] = set()
        self._next_recover = 0.0           # monotonic time of the next look for dead claims
        self.tasks: set[asyncio.Task] = set()
        self._settings_for = None
        self._router: Router | None = None
        self.stats = {"sent": 0, "deferred": 0, "failed": 0, "attempts": 0}
        self.outcomes = Outcomes(self.queue, self.blocking, log)
        self.disk = diskspace.Watch(log)

    # -- settings-derived state, rebuilt on reload --
    @property
    def settings(self):
        return self.runtime.settings

    def _refresh(self) -> None:
        s = self.settings
        if s is not self._settings_for:
            text = ""
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = self.root.config_file.read_text("utf-8")
            self._router = Router(s, text)
            for p in self._router.problems:
                log.error("routes: %s (route ignored)", p)
            self.deliverer.configure(self._router, mx.make_resolver(s))
            self._settings_for = s

    async def blocking(self, fn, *args):
        return await self.runtime.run_blocking(fn, *args)

    # -- scanning --
    def _scan(self) -> list[tuple[float, str]]:
        """(next_attempt, id) of every deferred item; re-reads only changed envelopes."""
        out = []
        seen = set()
        try:
            entries = list(os.scandir(self.queue.dir / "deferred"))
        except FileNotFoundError:
            return []
        for e in entries:
            if not e.name.endswith(".toml"):
                continue
            qid = e.name[:-5]
            try:
                mtime = e.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            seen.add(qid)
            cached = (mtime, mtime / 1e9, "")      # the envelope's mtime is its next attempt
            self.cache[qid] = cached
            out.append((cached[1], qid))
        for qid in list(self.cache):
            if qid not in seen:
                del self.cache[qid]
        out.sort()
        return out

    async def due(self, force: bool = False) -> list[str]:
        now = self.clock()
        items = await self.blocking(self._scan)
        return [qid for t, qid in items if (force or t <= now) and qid not in self.inflight]

    # -- the loop --
    async def start(self) -> None:
        await self.blocking(self.queue.ensure)
        returned = await self.blocking(self.queue.recover, _owner_alive)
        keep = await self.blocking(self.keep_bodies, self.root)
        swept = await self.blocking(self.queue.sweep_orphans, 3600.0, keep)
        if swept:
            log.warning("queue: removed %d message file(s) without an envelope (left by a crash)", swept)
        if returned:
            log.warning("queue: %d item(s) left in active/ by a crash returned to deferred/", len(returned))
        self._next_recover = time.monotonic() + RECOVER_EVERY_S

    async def _recover_dead_claims(self) -> None:
        """Take back items a process that died after our start had claimed: at our start
        it may still have been dying (a replaced serving process, a supervisor killed and
        started again at once), and its items must not wait for the next restart."""
        if time.monotonic() < self._next_recover:
            return
        self._next_recover = time.monotonic() + RECOVER_EVERY_S
        returned = await self.blocking(self.queue.recover, _other_owner_alive)
        if returned:
            log.warning("queue: %d item(s) claimed by a process that died returned to deferred/", len(returned))

    async def run_once(self, force: bool = False) -> int:
        """Deliver everything due now (everything when force) and wait until done."""
        self._refresh()
        await self.outcomes.save_pending()
        ids = await self.due(force)
        sem = asyncio.Semaphore(self.settings.queue.concurrency)

        async def one(qid):
            async with sem:
                await self._guarded(qid, force)

        await asyncio.gather(*(one(q) for q in ids))
        await self.pool.prune()
        return len(ids)

    async def serve(self, stopping: asyncio.Event) -> None:
        await self.start()
        try:
            with wakeup.subscription() as wake:
                while not stopping.is_set():
                    await self._serve_pass(stopping)
                    wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(_first(wake, stopping), POLL_SECONDS)
        finally:
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=30)
            await self.pool.prune(everything=True)

    async def _serve_pass(self, stopping: asyncio.Event) -> None:
        """One look at the queue: start what is due, up to queue.concurrency at a time."""
        self._refresh()
        with contextlib.suppress(OSError):
            await self.blocking(self.disk.check, self.root, self.settings)
        await self.outcomes.save_pending()
        with contextlib.suppress(OSError):
            await self._recover_dead_claims()
        force = await self._take_flush_request()
        if force or not self.settings.queue.offline:
            for qid in await self.due(force):
                if stopping.is_set():
                    break
                while len(self.tasks) >= self.settings.queue.concurrency and not stopping.is_set():
                    await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
                if stopping.is_set():
                    break
                self.inflight.add(qid)
                task = asyncio.create_task(self._guarded(qid, force))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        await self.pool.prune()

    async def _guarded(self, qid: str, force: bool = False) -> None:
        try:
            await self.process(qid, force)
        except Exception as e:  # noqa: BLE001 - one bad item must not stop the runner
            if is_storage_fault(e):
                self.outcomes.trouble(qid, e)
            else:
                log.exception("queue %s: delivery attempt failed unexpectedly; it stays queued", qid)
        finally:
            self.inflight.discard(qid)

    async def _take_flush_request(self) -> bool:
        try:
            return await self.blocking(self.queue.take_flush_request)
        except OSError as e:          # read-only: the request stays for later
            if not is_storage_fault(e):
                raise
            return False

    # -- one item --
    async def process(self, qid: str, force: bool = False) -> None:
        prepared = await self.blocking(self._prepare, qid, force)
        if prepared is None:
            return
        env, data, wire, held = prepared
        try:
            await self._attempt(env, data, wire, held)
        except BaseException:
            # Leave it for the next pass (its next_attempt is already written).
            with contextlib.suppress(Exception):
                await self.outcomes.finish(env)
            raise

    def _prepare(self, qid: str, force: bool = False):
        """Claim, record the attempt, read and sign the message: one trip to the disk
        thread pool. None when another runner got the item or it is gone; else the
        envelope, the message, its wire form, and why it must not go now ("" if it may)."""
        env = self.queue.claim(qid, self.owner)
        if env is None:
            return None
        self._refresh()
        now = self.clock()
        if not force and env.next_attempt > now + 1:
            # the mtime said due but the envelope says later (written by hand or by an
            # older version): put it back untouched
            self.queue.move(env, "deferred")
            with contextlib.suppress(OSError):
                os.utime(self.queue.envelope_path(env.id, "deferred"), (env.next_attempt, env.next_attempt))
            return None
        pending = [r for r in env.recipients if not r.done]
        env.attempts += 1
        env.last_attempt = now
        env.next_attempt = now + schedule_delay(self._retry_minutes(pending), env.attempts)
        env.claim = self.owner
        try:
            self.queue.write_attempt(env)   # the next attempt is on disk before we try
        except OSError as e:
            if not is_storage_fault(e):
                raise
            # no attempt without its record: back to deferred/ untried (a rename needs no room;
            # on a read-only disk a later pass does it)
            with contextlib.suppress(OSError):
                self.queue.move(env, "deferred")
            if env.state == "active":
                self.outcomes.unsaved[env.id] = env
            raise
        try:
            data = self.queue.body_path(env.id).read_bytes()
        except FileNotFoundError:
            log.error("queue %s: message file missing; item removed", env.id)
            self.queue.remove(env)
            return None
        signed, held = self._sign(env, data)
        return env, data, to_wire(signed), held

    async def _attempt(self, env: Envelope, data: bytes, wire: bytes, held: str = "") -> None:
        s = self.settings
        self.stats["attempts"] += 1
        pending = [r for r in env.recipients if not r.done]
        if held:
            hold(pending, held)
        else:
            await self.rate.wait(s.queue.messages_per_minute)
            await self._deliver(env, pending, data, wire)
        newly_failed = [r for r in pending if r.status == "failed"]
        still = [r for r in pending if not r.done]
        for r in pending:
            if r.status == "sent":
                self.stats["sent"] += 1
            log.info("queue %s: to=<%s> status=%s %s", env.id, r.address, r.status, r.reply[:200])
        now = self.clock()
        expired = still and now >= env.created + float(s.queue.max_age_days) * 86400
        if expired:
            days = s.queue.max_age_days
            for r in still:
                r.status = "failed"
                r.reply = (f"{r.reply} (gave up after {days} days in the queue)" if r.reply
                           else f"gave up after {days} days in the queue")
                if not r.dsn or r.dsn[0] != "5":
                    r.dsn = "5.4.7"
                newly_failed.append(r)
            still = []
        self.stats["failed"] += len(newly_failed)
        owed = [r for r in env.recipients if r.address in env.notice_due and r not in newly_failed]
        if newly_failed or owed:
            env.notice_due = []
            if not await self._notify_safely(env, owed + newly_failed, "failed", data):
                env.notice_due = [r.address for r in owed + newly_failed]
        if still:
            self.stats["deferred"] += 1
            env.last_code = still[0].code
            env.last_error = still[0].reply
            hours = float(s.queue.delay_notice_hours)
            if hours > 0 and not env.delay_notified and now - env.created >= hours * 3600 and env.sender:
                # a notice the disk could not take is tried again at the next attempt
                env.delay_notified = await self._notify_safely(env, still, "delayed", data)
        elif newly_failed:
            env.last_code, env.last_error = newly_failed[0].code, newly_failed[0].reply
        await self.outcomes.finish(env)
        self.cache.pop(env.id, None)

    async def _deliver(self, env: Envelope, pending: list[Recipient], data: bytes, wire: bytes) -> None:
        s = self.settings
        eightbit = not data.isascii()
        # One transaction per destination domain; recipients going through the same relay
        # (smart host or route) share transactions, the relay sorts them out.
        groups: dict[str, list[Recipient]] = {}
        for r in pending:
            route = self._router.for_domain(r.domain)
            key = f"relay {route.host}:{route.port}" if route is not None else r.domain
            groups.setdefault(key, []).append(r)
        per_tx = s.queue.max_recipients_per_transaction
        for rcpts in groups.values():
            for i in range(0, len(rcpts), per_tx):
                chunk = rcpts[i:i + per_tx]
                await self.deliverer.deliver(env, chunk[0].domain, chunk, wire, eightbit)

    def _retry_minutes(self, pending: list[Recipient]):
        for r in pending:
            route = self._router.routes.get(r.domain) if self._router else None
            if route is not None and route.retry_minutes:
                return route.retry_minutes
        return self.settings.queue.retry_minutes

    def _sign(self, env: Envelope, data: bytes) -> tuple[bytes, str]:
        """The message to send, and why it must wait instead ("" when it may go): mail
        whose domain signs is never sent unsigned because a module or its key is missing."""
        try:
            return dkim.sign_outbound(self.root, self.settings, self.runtime.directory, data), ""
        except dkim.SigningUnavailable as e:
            log.error("queue %s: not sent, DKIM signing is impossible: %s; it stays queued", env.id, e)
            return data, f"4.3.0 not sent: DKIM signing is impossible: {e}"
        except Exception as e:  # noqa: BLE001 - a message dkimpy refuses would never go: it goes unsigned
            log.error("queue %s: DKIM signing failed (%s); sent unsigned", env.id, e)
            return data, ""

    # -- notifications --
    async def _notify_safely(self, env: Envelope, recipients, action: str, data: bytes) -> bool:
        """A notice that cannot be written must not undo the attempt's recorded results.
        False when the disk could not take it (full, read-only): to be tried again."""
        try:
            await self.blocking(self.notify, env, recipients, action, data)
        except Exception as e:  # noqa: BLE001 - the recorded results stand whatever the notice met
            if is_storage_fault(e):
                log.warning("queue %s: the %s notice waits for room on the disk: %s", env.id, action, e.strerror)
                return False
            log.error("queue %s: could not write the %s notice: %s", env.id, action, e)
        return True

    def notify(self, env: Envelope, recipients: list[Recipient], action: str, data: bytes) -> None:
        to = dsn.notify(self.root, self.settings, self.runtime.directory, env, recipients, action, data,
                        now=self.clock(), log=log)
        if to:
            log.info("queue %s: %s notice sent to %s", env.id, action, to)
        else:
            log.info("queue %s: no %s notice sent", env.id, action)


def hold(recipients: list[Recipient], why: str) -> None:
    """Defer recipients without trying them (why: an enhanced status code and text)."""
    for r in recipients:
        r.status, r.code, r.reply, r.remote, r.dsn = "deferred", 0, why, "", why.split()[0]


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def run(runtime, keep_bodies=no_pending_bodies) -> None:
    """The 'queue' worker: deliver until runtime.stopping is set."""
    await Runner(runtime, keep_bodies=keep_bodies).serve(runtime.stopping)
