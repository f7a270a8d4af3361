"""The queue runner: delivers queued mail, retries, bounces.

One pass: list deferred/ (an mtime cache avoids re-reading unchanged envelopes), pick the
items that are due, claim each by renaming it into active/ (exactly one process wins),
write the next attempt time *before* the attempt (as Mox does: a crash never makes us
hammer a server), deliver each destination domain in transactions of at most
queue.max_recipients_per_transaction recipients, record a status per recipient
(2xx sent, 4xx deferred, 5xx failed), send DSNs, and rename the envelope back to
deferred/ (or remove the item when every recipient is done).

Items in active/ at start were left by a crash: they go back to deferred/.
Connections to a host are reused for the next message to it (a small idle pool).

A full or read-only disk (ENOSPC, EDQUOT, EROFS) loses nothing and sends nothing twice:
an outcome that cannot be written is kept for a later pass (outcomes.py); an item whose
attempt record cannot be written goes back to deferred/ untried; a notice that cannot be
written is owed (Envelope.notice_due) and written at the item's next attempt, so the
item is not removed before it is.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import ssl
import time
from dataclasses import dataclass

from .. import control, diskspace
from ..storage_errors import is_storage_fault
from ..errors import MailError
from ..queue import Envelope, Queue, Recipient
from ..locks import pid_alive
from . import dsn, mx
from .outcomes import Outcomes
from .client import Connection, Reply, SMTPError, to_wire, unverified_context, verified_context
from .routes import Route, Router

log = logging.getLogger("mailctl.queue")

LOOP_TEXT = "The Mail Server Software Tried To Deliver E-mail To The Local Machine"
POLL_SECONDS = 1.0
RECOVER_EVERY_S = 5.0     # how often items claimed by a process that died meanwhile are taken back
IDLE_CONNECTION_SECONDS = 5.0
MAX_TRANSACTIONS_PER_CONNECTION = 100

# Runners of this process wake up at once on 'queue-changed' (control socket).
_wakeups: set[asyncio.Event] = set()


async def _queue_changed(runtime, **args) -> dict:
    for ev in list(_wakeups):
        ev.set()
    return {"ok": True}


control.register("queue-changed", _queue_changed)


def wake_local() -> None:
    """Wake the runners of this process (the pickup worker queued something)."""
    for ev in list(_wakeups):
        ev.set()


def notify_server(root) -> bool:
    """Tell a running server the queue changed (False when none runs)."""
    try:
        control.request(root, "queue-changed", timeout=2.0)
        return True
    except (MailError, OSError):
        return False


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


def _local_addresses() -> set[str]:
    out = set()
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            out.add(info[4][0])
    return out


class ConnectionPool:
    """Idle connections per (ip, port, tls, user), reused for the next message."""

    def __init__(self):
        self.idle: dict[tuple, list[tuple[Connection, float]]] = {}
        self.closing: set[asyncio.Future] = set()     # held so a closing connection is not collected mid-QUIT

    def get(self, key) -> Connection | None:
        items = self.idle.get(key)
        while items:
            conn, since = items.pop()
            if not conn.closed and time.monotonic() - since < IDLE_CONNECTION_SECONDS:
                return conn
            self.closing.add(asyncio.ensure_future(conn.close()))
            self.closing = {t for t in self.closing if not t.done()}
        return None

    def put(self, key, conn: Connection) -> None:
        if conn.closed or conn.transactions >= MAX_TRANSACTIONS_PER_CONNECTION:
            self.closing.add(asyncio.ensure_future(conn.quit()))
            self.closing = {t for t in self.closing if not t.done()}
            return
        self.idle.setdefault(key, []).append((conn, time.monotonic()))

    async def prune(self, everything: bool = False) -> None:
        now = time.monotonic()
        for key, items in list(self.idle.items()):
            keep = []
            for conn, since in items:
                if everything or conn.closed or now - since >= IDLE_CONNECTION_SECONDS:
                    await conn.quit()
                else:
                    keep.append((conn, since))
            self.idle[key] = keep


class RateLimit:
    """At most n starts per minute, evenly spaced (0 = no limit)."""

    def __init__(self):
        self.next_slot = 0.0

    async def wait(self, per_minute: int) -> None:
        if per_minute <= 0:
            return
        now = time.monotonic()
        slot = max(now, self.next_slot)
        self.next_slot = slot + 60.0 / per_minute
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass
class Target:
    """One place to try: a host name, the port and how to talk to it."""
    host: str
    port: int
    tls: str                  # "opportunistic", "none", "starttls", "implicit"
    verify: bool
    route: Route | None


# -- the runner -------------------------------------------------------------------

class Runner:
    def __init__(self, runtime, clock=None):
        self.runtime = runtime
        self.root = runtime.root
        self.queue = Queue(runtime.root)
        self.clock = clock or getattr(runtime, "clock", time.time)
        self.owner = owner_id()
        self.pool = ConnectionPool()
        self.rate = RateLimit()
        self.cache: dict[str, tuple[int, float, str]] = {}     # id -> (mtime_ns, next_attempt, "")
        self.inflight: set[str] = set()
        self._next_recover = 0.0           # monotonic time of the next look for dead claims
        self.tasks: set[asyncio.Task] = set()
        self._settings_for = None
        self._router: Router | None = None
        self._resolver = None
        self._local = _local_addresses()
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
            self._resolver = mx.make_resolver(s)
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
        from ..pickup import pending_queue_ids
        keep = await self.blocking(pending_queue_ids, self.root)
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
        wake = asyncio.Event()
        _wakeups.add(wake)
        try:
            while not stopping.is_set():
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
                wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(_first(wake, stopping), POLL_SECONDS)
        finally:
            _wakeups.discard(wake)
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=30)
            await self.pool.prune(everything=True)

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
        env, data, wire = prepared
        try:
            await self._attempt(env, data, wire)
        except BaseException:
            # Leave it for the next pass (its next_attempt is already written).
            with contextlib.suppress(Exception):
                await self.outcomes.finish(env)
            raise

    def _prepare(self, qid: str, force: bool = False):
        """Claim, record the attempt, read and sign the message: one trip to the disk
        thread pool. None when another runner got the item or it is gone."""
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
        signed = self._sign(env, data)
        return env, data, to_wire(signed)

    async def _attempt(self, env: Envelope, data: bytes, wire: bytes) -> None:
        s = self.settings
        self.stats["attempts"] += 1
        pending = [r for r in env.recipients if not r.done]
        await self.rate.wait(s.queue.messages_per_minute)
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
                await self.deliver_chunk(env, chunk[0].domain, chunk, wire, eightbit)
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

    def _retry_minutes(self, pending: list[Recipient]):
        for r in pending:
            route = self._router.routes.get(r.domain) if self._router else None
            if route is not None and route.retry_minutes:
                return route.retry_minutes
        return self.settings.queue.retry_minutes

    def _sign(self, env: Envelope, data: bytes) -> bytes:
        try:
            from . import dkim as dkim_sign
        except ImportError:
            return data
        try:
            return dkim_sign.sign_outbound(self.root, self.settings, self.runtime.directory, data)
        except Exception as e:  # noqa: BLE001 - an unsigned message is better than none
            log.error("queue %s: DKIM signing failed (%s); sent unsigned", env.id, e)
            return data

    # -- notifications --
    async def _notify_safely(self, env: Envelope, recipients, action: str, data: bytes) -> bool:
        """A notice that cannot be written must not undo the attempt's recorded results.
        False when the disk could not take it (full, read-only): to be tried again."""
        try:
            await self.blocking(self._notify, env, recipients, action, data)
        except Exception as e:  # noqa: BLE001
            if is_storage_fault(e):
                log.warning("queue %s: the %s notice waits for room on the disk: %s", env.id, action, e.strerror)
                return False
            log.error("queue %s: could not write the %s notice: %s", env.id, action, e)
        return True

    def _notify(self, env: Envelope, recipients: list[Recipient], action: str, data: bytes) -> None:
        to = dsn.notify(self.root, self.settings, self.runtime.directory, env, recipients, action, data,
                        now=self.clock(), log=log)
        if to:
            log.info("queue %s: %s notice sent to %s", env.id, action, to)
        else:
            log.info("queue %s: no %s notice sent", env.id, action)

    # -- one transaction group --
    async def targets(self, domain: str) -> list[Target]:
        """The places to try for domain, in order. Raises mx.DNSFailure."""
        s = self.settings
        verify = domain in [d.lower().rstrip(".") for d in s.queue.require_tls_domains]
        route = self._router.for_domain(domain)
        if route is not None:
            return [Target(route.host, route.port, route.tls, verify, route)]
        hosts = await mx.lookup_mx(self._resolver, domain)
        tls = "starttls" if verify else "opportunistic"
        return [Target(h.name, s.queue.smtp_port, tls, verify, None) for h in hosts]

    def is_loop(self, ip: str, port: int) -> bool:
        """Would connecting to ip:port reach this server's own SMTP listener?"""
        s = self.settings
        ports = set()
        binds = set()
        for name in ("smtp", "submission", "submissions"):
            lst = getattr(s.listeners, name, None)
            if lst is not None and lst.enabled:
                ports.add(lst.port)
                binds.update(lst.bind)
        for name, bound in (getattr(self.runtime, "ports", {}) or {}).items():
            if name in ("smtp", "submission", "submissions"):
                for host, p in bound:
                    ports.add(p)
                    binds.add(host)
        if port not in ports:
            return False
        addr = ipaddress.ip_address(ip)
        return addr.is_loopback or addr.is_unspecified or ip in binds or ip in self._local

    async def deliver_chunk(self, env: Envelope, domain: str, rcpts: list[Recipient], wire: bytes,
                            eightbit: bool) -> None:
        def mark(r: Recipient, reply: Reply, remote: str) -> None:
            r.code, r.reply, r.remote = reply.code, str(reply), remote
            r.dsn = reply.enhanced
            r.status = "sent" if 200 <= reply.code < 300 else "failed" if reply.code >= 500 else "deferred"

        def mark_all(reply: Reply, remote: str = "", code_known: bool = True) -> None:
            for r in rcpts:
                mark(r, reply, remote)
                if not code_known:
                    r.code = 0
                    r.reply = reply.text

        try:
            targets = await self.targets(domain)
        except mx.DNSFailure as e:
            code = 550 if e.permanent else 451
            mark_all(Reply(code, f"{e.status} {e}"), code_known=False)
            return
        last: Reply | None = None
        last_remote = ""
        for t in targets:
            try:
                addrs = await mx.lookup_addresses(self._resolver, t.host)
            except mx.DNSFailure as e:
                if e.permanent and len(targets) == 1 and t.route is None:
                    mark_all(Reply(550, f"{e.status} {e}"), code_known=False)
                    return
                last, last_remote = Reply(451, f"{e.status} {e}"), ""
                continue
            for ip in addrs:
                if self.is_loop(ip, t.port) and self._router.backup_mx(domain):
                    # we are one of the domain's MX hosts (backup MX): skip ourselves and
                    # wait for a better one to come back
                    last, last_remote = Reply(451, f"4.4.1 no MX host of {domain} better than this server "
                                                   f"is reachable"), ""
                    continue
                if self.is_loop(ip, t.port):
                    mark_all(Reply(550, f"5.4.6 {LOOP_TEXT} ({t.host} [{ip}]:{t.port} is this server)"),
                             code_known=False)
                    return
                result = await self._try_host(env, t, ip, rcpts, wire, eightbit)
                if result is None:
                    return                       # replies recorded per recipient
                last, last_remote = result, f"{t.host} [{ip}]"
                if last.code >= 500 and last.code != 554:
                    # a permanent refusal of the whole transaction (MAIL FROM)
                    mark_all(last, last_remote)
                    return
        if last is None:
            last = Reply(451, "4.4.1 no destination host could be reached")
        for r in rcpts:
            r.status, r.code, r.reply, r.remote = "deferred", (last.code if last.code < 500 else 451), str(last), last_remote
            r.dsn = last.enhanced if last.enhanced.startswith("4") else "4.4.1"
            if not last_remote:
                r.code, r.reply = 0, last.text

    async def _connect(self, t: Target, ip: str, plain_fallback: bool = False) -> Connection:
        s = self.settings.queue
        helo = s.helo_name or self.settings.server.hostname
        ctx = self._tls_context(t.verify) if t.tls != "none" else None
        implicit = ctx if t.tls == "implicit" else None
        conn = await Connection.open(t.host, ip, t.port, timeout=float(s.connect_timeout_s),
                                     command_timeout=float(s.command_timeout_s),
                                     source_address=s.source_address, implicit_tls=implicit)
        try:
            await conn.ehlo(helo)
            if t.tls in ("starttls", "opportunistic") and not conn.tls and not plain_fallback:
                if "STARTTLS" in conn.features:
                    await conn.starttls(ctx, helo)
                elif t.tls == "starttls":
                    raise SMTPError(Reply(451, f"4.7.4 TLS is required for this destination but {t.host} "
                                               f"does not offer STARTTLS"), "STARTTLS")
            if t.route is not None and t.route.username:
                password = await self.blocking(t.route.password, self.root)
                await conn.auth(t.route.username, password)
        except BaseException:
            await conn.close()
            raise
        return conn

    def _tls_context(self, verify: bool):
        """Client TLS contexts are made once per settings (loading CAs is slow)."""
        cache = self.__dict__.setdefault("_tls_cache", {})
        if cache.get("settings") is not self.settings:
            cache.clear()
            cache["settings"] = self.settings
        if verify not in cache:
            cache[verify] = verified_context(self.settings.queue.tls_ca_file) if verify else unverified_context()
        return cache[verify]

    async def _try_host(self, env: Envelope, t: Target, ip: str, rcpts: list[Recipient], wire: bytes,
                        eightbit: bool) -> Reply | None:
        """Deliver rcpts through one address. None when every recipient got a reply;
        else the reply (or synthesized error) that made this host fail."""
        key = (ip, t.port, t.tls, t.route.username if t.route else "")
        remote = f"{t.host} [{ip}]"
        for attempt in ("pooled", "fresh", "plain"):
            conn = None
            if attempt == "pooled":
                conn = self.pool.get(key)
                if conn is None:
                    continue
            else:
                try:
                    conn = await self._connect(t, ip, plain_fallback=(attempt == "plain"))
                except SMTPError as e:
                    if e.stage == "AUTH":       # a relay refusing our login: retry later, as Postfix does
                        return Reply(454, f"4.7.0 {t.host} refused our login: {e.reply}")
                    return e.reply
                except ssl.SSLError as e:
                    if t.tls == "opportunistic" and attempt == "fresh":
                        continue        # broken TLS: try once more in plain text, as Postfix does
                    return Reply(451, f"4.7.5 TLS with {remote} failed: {e.reason or e}")
                except (OSError, asyncio.TimeoutError) as e:
                    why = e.strerror if isinstance(e, OSError) and e.strerror else (str(e) or type(e).__name__)
                    return Reply(451, f"4.4.1 cannot connect to {remote}:{t.port}: {why}")
            try:
                per, final = await conn.transaction(env.sender, [r.address for r in rcpts], wire, eightbit)
            except SMTPError as e:
                await conn.close()
                if attempt == "pooled":
                    continue            # the server dropped an idle connection: open a new one
                return e.reply
            except (OSError, asyncio.TimeoutError) as e:
                await conn.close()
                if attempt == "pooled":
                    continue
                return Reply(451, f"4.4.2 connection to {remote} lost: {e}")
            for r in rcpts:
                reply = per.get(r.address)
                if reply is None or reply.code not in (250, 251):
                    reply = reply or Reply(451, "4.4.2 no reply to RCPT")
                elif final is not None:
                    reply = final
                r.code, r.reply, r.remote, r.dsn = reply.code, str(reply), remote, reply.enhanced
                r.status = ("sent" if 200 <= reply.code < 300 else "failed" if reply.code >= 500
                            else "deferred")
            self.pool.put(key, conn)
            return None
        return Reply(451, f"4.4.1 cannot deliver through {remote}")

async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def run(runtime) -> None:
    """The 'queue' worker: deliver until runtime.stopping is set."""
    await Runner(runtime).serve(runtime.stopping)
