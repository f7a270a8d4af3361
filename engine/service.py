"""Runs a server: start, reload, graceful stop, in one of three roles.

- alone: one process serves every listener and worker (in-process tests);
- supervisor (`mailctl serve`): binds the listening sockets, runs the control socket and
  the run files, and keeps server.processes serving processes running (engine/supervisor.py);
  it serves nothing itself, as Postfix's and Dovecot's masters do;
- serving: one of those processes, on the sockets it inherited, as server.user.

The listeners and workers are named in listener_starters() and workers(); their modules
are imported when a process starts them (the supervisor never does).
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import signal
import socket
import sys
import time

import tomli_w

from . import control, diskspace, listeners, localsubmit, logs, privileges
from .accept import antivirus, attachments, spamscan
from .errors import MailError
from .outbound import wakeup
from .queue import Queue
from .root import Root, atomic_write
from .runtime import Runtime
from .sharedcounts import FILE_NAME as COUNTS_FILE, MAX_SLOTS, PROTOCOLS, SharedCounts
from .supervisor import WORKER_SLOT, Children

STOP_DEADLINE_S = 30.0
LOG_CHECK_S = 5.0             # how often the supervisor checks the log's size
PID_FILE = "mailctl.pid"
PORTS_FILE = "ports.toml"


def listener_starters() -> dict:
    """Listener name (PROTOCOLS) -> the function that starts it. Imported here rather than
    at the top: the supervisor only binds the sockets and never loads the protocol servers."""
    from .imap.server import start as start_imap
    from .managesieve.server import start as start_managesieve
    from .pop3.server import start as start_pop3
    from .smtp.server import start as start_smtp
    return {"smtp": start_smtp, "submission": start_smtp, "submissions": start_smtp,
            "imap": start_imap, "imaps": start_imap, "pop3": start_pop3, "pop3s": start_pop3,
            "managesieve": start_managesieve}


def workers() -> dict:
    """Worker name (its settings section) -> the function that runs it until the server stops."""
    from . import learning, pickup
    from .accept import greylisting
    from .outbound import runner

    async def queue(rt) -> None:
        # the runner's start-up sweep keeps the bodies that pickup's commit markers still name
        await runner.run(rt, keep_bodies=pickup.pending_queue_ids)

    return {"queue": queue, "pickup": pickup.run, "greylist_expiry": greylisting.expire, "spam_learn": learning.run}


class Service:
    """role: "alone", "supervisor" or "serving" (see above). A supervisor starts
    `processes` serving processes as `account`; a serving process gets its slot, sockets
    and duties in spec (from the supervisor)."""

    def __init__(self, root: Root, runtime: Runtime | None = None, role: str = "alone",
                 processes: int = 1, account: privileges.Account | None = None, spec: dict | None = None):
        self.root = root
        self.runtime = runtime or Runtime.load(root)
        self.role = role
        self.processes = processes
        self.account = account                # the serving processes' user (supervisor as root)
        self.spec = spec or {}
        self.slot = self.spec.get("slot", 0)  # this process's slot in the shared counts
        self.children: Children | None = None
        self.log_stderr = False               # serving processes log to stderr too (foreground serve)
        self.counts: SharedCounts | None = None
        self.bound: dict[str, list[socket.socket]] = {}   # supervisor: the listening sockets
        self.servers: dict[str, list] = {}
        self.tasks: list[asyncio.Task] = []
        self.control_server = None
        self.submit_server = None             # run/submit.sock: sendmail(1) for local users
        self.watcher = None
        self.started = asyncio.Event()

    # -- start --
    async def start(self) -> None:
        rt = self.runtime
        rt.stopping.clear()
        rt.root.run_dir.mkdir(parents=True, exist_ok=True)
        if self.role == "serving":
            self.counts = SharedCounts.attach(rt.root.run_dir, self.slot)
            rt.inherited = {name: [socket.socket(fileno=fd) for fd in fds]
                            for name, fds in self.spec.get("fds", {}).items()}
        else:
            self.counts = SharedCounts.create(rt.root.run_dir)
            privileges.give(rt.root.run_dir / COUNTS_FILE, self.account)
        rt.sessions.shared = self.counts
        if self.role == "supervisor":
            self.bound = await rt.run_blocking(listeners.bind_all, rt.settings, PROTOCOLS)
            rt.ports = {name: listeners.addresses(socks) for name, socks in self.bound.items()}
        else:
            await self._start_listeners()
        if self.role != "serving":           # a serving process's sockets are the supervisor's
            for name, addrs in rt.ports.items():
                for host, port in addrs:
                    rt.log.info("listening: %s on %s port %d (tls %s)", name, host, port,
                                getattr(rt.settings.listeners, name).tls)
        if self.role == "alone" or self.spec.get("workers"):
            self._start_workers()
        from .configwatch import ConfigWatcher
        self.watcher = ConfigWatcher(rt, on_reload=self.warn_settings if self.role != "serving" else None)
        if self.role != "serving":
            self.warn_settings()
        self.tasks.append(asyncio.create_task(self.watcher.run(), name="config-watch"))
        if self.role != "supervisor":
            register_local_handlers(self)
        if self.role != "serving":
            register_handlers(self)
        if self.role == "supervisor":       # the server is up once every serving process answers
            self.children = Children(self.root, self.bound, self.account, self.processes, self.log_stderr,
                                     on_exit=self._forget_slot, halt=rt.stopping)
            self.children.start_all()
            await self.children.wait_ready()
            self.tasks.append(asyncio.create_task(self.children.watch(), name="watch-children"))
            self.tasks.append(asyncio.create_task(self._rotate_log(), name="rotate-log"))
        path = control.socket_path(self.root, self.slot)
        self.control_server = await control.serve(rt, path)
        if self.role == "alone" or self.spec.get("workers"):     # sendmail(1) of local users queues mail
            self.submit_server = await localsubmit.serve(rt)
        if self.role != "serving":
            privileges.give(path, self.account)
            await rt.run_blocking(self._write_run_files)
        else:
            rt.log.info("serving process %d ready in slot %d as %s%s", os.getpid(), self.slot,
                        privileges.user_name(os.geteuid()), " (queue and pickup)" if self.spec.get("workers") else "")
        self.started.set()

    async def _start_listeners(self) -> None:
        rt = self.runtime
        starters = listener_starters()
        for name in PROTOCOLS:
            ls = getattr(rt.settings.listeners, name, None)
            if ls is None or not ls.enabled or (self.role == "serving" and name not in rt.inherited):
                continue
            self.servers[name] = await starters[name](rt, name, ls)

    def _start_workers(self) -> None:
        rt = self.runtime
        control.register("queue-changed", wakeup.queue_changed)    # mailctl send, sendmail: wake the runner here
        for name, fn in workers().items():
            section = getattr(rt.settings, name, None)
            if section is not None and getattr(section, "enabled", True) is False:
                continue
            self.tasks.append(asyncio.create_task(self._worker(name, fn), name=f"worker-{name}"))

    async def _rotate_log(self) -> None:
        """The serving processes fill the log; the supervisor rotates it."""
        while not self.runtime.stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.runtime.stopping.wait(), LOG_CHECK_S)
            logs.check_size()

    def _forget_slot(self, slot: int) -> None:
        """A dead serving process's connections no longer count; its socket is stale."""
        self.counts.clear_slot(slot)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(control.socket_path(self.root, slot))

    async def ask_children(self, command: str, only: int | None = None, **args) -> list[dict]:
        """Ask every serving process (or the one in slot `only`) over its control socket;
        one that does not answer is skipped."""
        async def ask(slot):
            try:
                return await control.ask(control.socket_path(self.root, slot), command, **args)
            except (OSError, MailError, asyncio.TimeoutError, ValueError):
                return None
        slots = self.children.slots() if self.children else []
        replies = await asyncio.gather(*(ask(slot) for slot in slots if only in (None, slot)))
        return [r for r in replies if r is not None]

    def warn_settings(self) -> None:
        """Settings an admin must not miss."""
        from . import settings as settings_mod
        listeners = settings_mod.as_dict(self.runtime.settings.listeners)
        if getattr(self, "_listeners", None) not in (None, listeners):
            self.runtime.log.warning("listener settings changed: they take effect after 'mailctl restart'")
        self._listeners = listeners
        relay = self.runtime.settings.relay
        if relay.open_relay_for_trusted:
            self.runtime.log.warning(
                "WARNING: relay.open_relay_for_trusted is on: clients in relay.trusted_networks (%s) may "
                "RELAY MAIL TO ANY DOMAIN through port 25 without authentication",
                ", ".join(relay.trusted_networks) or "none")
        if self.runtime.settings.auth.allow_plaintext:
            self.runtime.log.warning("WARNING: auth.allow_plaintext is on: passwords may cross the network unencrypted")

    async def _worker(self, name: str, fn) -> None:
        rt = self.runtime
        while not rt.stopping.is_set():
            try:
                await fn(rt)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                rt.log.exception("worker %s failed; restarting it in 5 s", name)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(rt.stopping.wait(), 5)

    def _write_run_files(self) -> None:
        ports = {name: [{"host": h, "port": p} for h, p in addrs] for name, addrs in self.runtime.ports.items()}
        atomic_write(self.root.run_dir / PORTS_FILE, tomli_w.dumps({"pid": os.getpid(), "ports": ports}))
        privileges.give(self.root.run_dir / PORTS_FILE, self.account)

    # -- status --
    def local_status(self) -> dict:
        rt = self.runtime
        return {"pid": os.getpid(), "connections_total": dict(rt.sessions.total_opened),
                "counters": {**rt.counters, **antivirus.counts(), **attachments.counts()}, "slot": self.slot, "user": privileges.user_name(os.geteuid())}

    async def status(self) -> dict:
        """The whole server: connection counts from the shared counts, totals and counters
        added up over every serving process."""
        rt = self.runtime
        listeners = []
        for name, addrs in rt.ports.items():
            ls = getattr(rt.settings.listeners, name)
            listeners.append({"name": name, "tls": ls.tls, "addresses": [f"{h} port {p}" for h, p in addrs],
                              "port": addrs[0][1] if addrs else None,
                              "connections": rt.sessions.count((name,))})
        try:
            queue_size = await rt.run_blocking(Queue(self.root).count)
        except OSError:
            queue_size = None
        parts = ([self.local_status()] if self.role == "alone" else []) + await self.ask_children("status-local")
        children = self.children
        return {"pid": os.getpid(), "root": str(self.root.path), "started": rt.started,
                "uptime_s": int(rt.clock() - rt.started), "listeners": listeners,
                "processes": children.pids() if children else [os.getpid()],
                "user": privileges.user_name(os.geteuid()),
                "serving": [{k: p.get(k) for k in ("pid", "slot", "user")} for p in parts],
                "restarts": children.restarts if children else 0,
                "last_exit": children.last_exit if children else None,
                "connections": rt.sessions.count(),
                "connections_total": _add_up(p["connections_total"] for p in parts),
                "queue_size": queue_size, "counters": _add_up(p["counters"] for p in parts),
                "ports": {name: addrs[0][1] for name, addrs in rt.ports.items() if addrs},
                "config_problems": list(self.watcher.last_problems) if self.watcher else [],
                "disk": await rt.run_blocking(diskspace.status, self.root, rt.settings),
                "antivirus": await rt.run_blocking(antivirus.status, rt.settings),
                "spam_scanners": await rt.run_blocking(spamscan.status, rt.settings)}

    # -- stop --
    async def stop(self, deadline: float = STOP_DEADLINE_S) -> None:
        """Stop accepting, let transactions in flight finish (up to deadline), then close.
        A supervisor stops its serving processes the same way (SIGTERM), then closes."""
        rt = self.runtime
        rt.stopping.set()
        rt.log.info("stopping: no new connections; waiting up to %gs for transactions in flight", deadline)
        for server in (self.control_server, self.submit_server):
            if server is not None:
                server.close()
        if self.children is not None:
            await self.children.stop(deadline + 5)
        for socks in self.bound.values():
            listeners.close(socks)
        for servers in self.servers.values():
            for s in servers:
                s.close()
        for sess in rt.sessions.list():
            if sess.closer is not None:
                with contextlib.suppress(Exception):
                    sess.closer()
        end = time.monotonic() + deadline
        while any(s.busy for s in rt.sessions.list()) and time.monotonic() < end:
            await asyncio.sleep(0.05)
        for sess in rt.sessions.list():
            if sess.closer is not None:
                with contextlib.suppress(Exception):
                    sess.closer()
        await asyncio.sleep(0.05)
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(t, 5)
        for servers in self.servers.values():
            for s in servers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(s.wait_closed(), 1)
        if self.counts is not None:
            rt.sessions.shared = None          # connections closed after this count nowhere
            self.counts.close()
        run_files = [control.socket_path(self.root, self.slot)]
        if self.role != "serving":
            run_files.append(self.root.run_dir / PORTS_FILE)
        if self.submit_server is not None:
            run_files.append(localsubmit.socket_path(self.root))
        for path in run_files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        rt.log.info("stopped")


def _add_up(dicts) -> dict:
    total: dict = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total


def register_local_handlers(service: Service) -> None:
    """What every serving process answers about itself."""
    async def who_local(rt, **_):
        return {"sessions": [s.public() for s in rt.sessions.list()]}

    async def status_local(rt, **_):
        return service.local_status()

    control.register("who-local", who_local)
    control.register("status-local", status_local)


def register_handlers(service: Service) -> None:
    """The control socket of the supervisor (or of a process serving alone): the whole server."""
    async def status(rt, **_):
        return await service.status()

    async def reload(rt, **_):
        problems = await service.watcher.reload("mailctl reload")
        if problems:
            raise MailError(f"reload failed, still serving the last good configuration: {problems[0]}"
                            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        if service.children is not None:         # each serving process re-reads the files itself
            service.children.signal_all(signal.SIGHUP)
        return {"reloaded": True}

    async def who(rt, **_):
        sessions = [s.public() for s in rt.sessions.list()]
        for part in await service.ask_children("who-local"):
            sessions += part.get("sessions", [])
        return {"sessions": sessions}

    async def stop(rt, **_):
        asyncio.get_running_loop().call_later(0.05, rt.stopping.set)
        return {"stopping": True, "pid": os.getpid()}

    async def wake_queue_runner(rt, **_):
        return {"woken": bool(await service.ask_children("queue-changed", only=WORKER_SLOT))}

    control.register("status", status)
    control.register("reload", reload)
    control.register("who", who)
    control.register("stop", stop)
    if service.role == "supervisor":          # mailctl send, sendmail: to the serving process with the runner
        control.register("queue-changed", wake_queue_runner)


async def run(service: Service, ready=None) -> int:
    """Serve until SIGTERM/SIGINT or a 'stop' command; SIGHUP reloads."""
    # The event loop thread gives the GIL back to disk threads at every syscall; a short
    # switch interval lets it have the GIL back sooner (measured: ~15% more messages/s).
    sys.setswitchinterval(0.001)
    rt = service.runtime
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, rt.stopping.set)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(_reload(service, "SIGHUP")))
    try:
        await service.start()
    except BaseException:
        await service.stop(deadline=0)
        raise
    if ready is not None:
        ready(service)
    await rt.stopping.wait()
    await service.stop()
    rt.close()
    return 0


async def _reload(service: Service, why: str) -> None:
    await service.watcher.reload(why)
    if service.children is not None:
        service.children.signal_all(signal.SIGHUP)


def process_count(settings, requested: int | None) -> int:
    """--processes, else server.processes; 0 = one per CPU core."""
    n = settings.server.processes if requested is None else requested
    if n <= 0:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n, MAX_SLOTS - 1))


def serve(root: Root, stderr: bool = True, ready=None, processes: int | None = None) -> int:
    """`mailctl serve`: the supervisor, in the foreground; logs to stderr and log/. The
    serve lock decides whether a server runs: files a crashed one left are removed."""
    root.require()
    from . import settings as settings_mod
    settings = settings_mod.load(root.config_file, "mailctl.toml")
    account = privileges.serving_account(settings)
    if account is not None:
        privileges.require_owner(root, account)
        privileges.require_reachable(root, account)
        os.umask(privileges.SERVING_UMASK)     # what root makes in the root is private too
    for folder in (root.run_dir, root.locks_dir, root.log_dir):
        if not folder.is_dir():
            folder.mkdir(parents=True)
            privileges.give(folder, account)
    logs.setup(root, settings.server.log_level, stderr=stderr, owner=account)
    processes = process_count(settings, processes)
    lock = root.lock("serve", timeout=0.1)
    try:
        lock.acquire()
    except MailError:
        raise MailError(f"another mailctl server is already running on {root.path}; "
                        f"see 'mailctl status'") from None
    pid_path = root.run_dir / PID_FILE
    try:
        privileges.give(lock.path, account)
        _remove_stale_run_files(root)
        atomic_write(pid_path, f"{os.getpid()}\n")
        privileges.give(pid_path, account)
        _tune_gc()
        service = Service(root, role="supervisor", processes=processes, account=account)
        service.log_stderr = stderr
        if account is None and os.geteuid() == 0:
            service.runtime.log.warning("WARNING: server.user is root: the serving processes run as root")
        return asyncio.run(run(service, ready))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_path)
        lock.release()
        logs.stop()


def _remove_stale_run_files(root: Root) -> None:
    """Left by a server that was killed: we hold the serve lock, so none of them is live."""
    run = root.run_dir
    stale = [run / PID_FILE, run / PORTS_FILE, localsubmit.socket_path(root), *run.glob("control*.sock"),
             *run.glob(f"{COUNTS_FILE}*")]
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# A serving process holds large long-lived structures (listings, uidlists, the header
# index: about a million objects for a 100,000-message folder) and makes a Message per
# changed file at each sync. With CPython's default thresholds (700, 10, 10) the collector
# walked that whole heap several times during one such sync: half the time of a SELECT
# after another process's STORE 1:* on 100,000 messages (1.1-1.9 s -> 0.6-0.9 s), and a
# quarter of the STORE. Young collections every 50,000 allocations instead of 700, as
# busy Python servers commonly tune; start-up objects are frozen out of it altogether.
GC_THRESHOLDS = (50_000, 20, 100)


def _tune_gc() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve_child(root: Root, spec: dict) -> int:
    """A serving process started by the supervisor: first its final user and the promise
    to die with the supervisor, then the listeners on the sockets it inherited (and the
    workers in slot 1). Logs to the same log/mailctl.log (the supervisor rotates it)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)   # a reload before we serve: we read the files anyway
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a core file would hold mail and passwords
    if spec.get("user"):
        privileges.become(privileges.Account(*spec["user"]))
    privileges.die_with_parent(spec["parent"])
    os.umask(privileges.SERVING_UMASK)
    from . import settings as settings_mod
    settings = settings_mod.load(root.config_file, "mailctl.toml")
    logs.setup(root, settings.server.log_level, stderr=bool(spec.get("stderr")), rotate=False)
    _tune_gc()
    log = logging.getLogger("mailctl")
    try:
        service = Service(root, role="serving", spec=spec)
        return asyncio.run(run(service))
    except MailError as e:           # a certificate that cannot be read, and the like
        log.error("serving process %d cannot serve: %s", os.getpid(), e)
        return 1
    except Exception as e:           # an escaped exception, MemoryError: the supervisor replaces us
        log.critical("serving process %d failed: %s: %s", os.getpid(), e.__class__.__name__, e,
                     exc_info=not isinstance(e, MemoryError))
        return 70
    finally:
        logs.stop()
