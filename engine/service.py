"""Runs every enabled listener and worker in one asyncio loop: start, reload, graceful stop.

Listener servers and workers come from registries, imported lazily; an entry whose module
does not exist (yet) is skipped with a log line, so each part can land on its own.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import os
import signal
import sys
import time

import tomli_w

from . import control, localsubmit, logs
from .errors import MailError
from .queue import Queue
from .root import Root, atomic_write
from .runtime import Runtime
from .sharedcounts import MAX_SLOTS, SharedCounts

PROTOCOLS = {
    "smtp": "engine.smtp.server:start",
    "submission": "engine.smtp.server:start",
    "submissions": "engine.smtp.server:start",
    "imap": "engine.imap.server:start",
    "imaps": "engine.imap.server:start",
    "pop3": "engine.pop3.server:start",
    "pop3s": "engine.pop3.server:start",
}
WORKERS = {
    "queue": "engine.outbound.runner:run",
    "pickup": "engine.pickup:run",
}
STOP_DEADLINE_S = 30.0
PID_FILE = "mailctl.pid"
PORTS_FILE = "ports.toml"


def load_entry(spec: str):
    """'module:function' -> the function, or None when the module does not exist yet."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            return None
        raise
    return getattr(module, attr, None)


class Service:
    """primary: listeners, workers, control socket, run files. secondary: listeners only, on
    the ports the primary bound (SO_REUSEPORT), for more CPU on a multi-core machine."""

    def __init__(self, root: Root, runtime: Runtime | None = None, ports: dict[str, int] | None = None,
                 slot: int = 0):
        self.root = root
        self.runtime = runtime or Runtime.load(root)
        self.secondary_ports = ports          # set in a secondary process
        self.slot = slot                      # this process's slot in the shared counts (primary: 0)
        self.children: dict[int, object] = {}     # slot -> Popen of a secondary (primary only)
        self.log_stderr = False               # secondaries log to stderr too (foreground serve)
        self.counts: SharedCounts | None = None
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
        if self.secondary_ports is None:
            self.counts = SharedCounts.create(rt.root.run_dir)
        else:
            self.counts = SharedCounts.attach(rt.root.run_dir, self.slot)
        rt.sessions.shared = self.counts
        for name, spec in PROTOCOLS.items():
            ls = getattr(rt.settings.listeners, name, None)
            if ls is None or not ls.enabled:
                continue
            fn = load_entry(spec)
            if fn is None:
                rt.log.info("listener %s: %s not available yet; skipped", name, spec.partition(":")[0])
                continue
            if self.secondary_ports is not None:
                if name not in self.secondary_ports:
                    continue
                from types import SimpleNamespace
                ls = SimpleNamespace(**{**vars(ls), "port": self.secondary_ports[name]})
            self.servers[name] = await fn(rt, name, ls)
            for host, port in rt.ports.get(name, []):
                rt.log.info("listening: %s on %s port %d (tls %s)", name, host, port, ls.tls)
        if self.secondary_ports is not None:
            self.tasks.append(asyncio.create_task(self._watch_parent(), name="watch-parent"))
            from .watch import ConfigWatcher
            self.watcher = ConfigWatcher(rt)
            self.tasks.append(asyncio.create_task(self.watcher.run(), name="config-watch"))
            register_local_handlers(self)
            self.control_server = await control.serve(rt, control.socket_path(self.root, self.slot))
            self.started.set()
            return
        for name, spec in WORKERS.items():
            section = getattr(rt.settings, name, None)
            if section is not None and getattr(section, "enabled", True) is False:
                continue
            fn = load_entry(spec)
            if fn is None:
                rt.log.info("worker %s: %s not available yet; skipped", name, spec.partition(":")[0])
                continue
            self.tasks.append(asyncio.create_task(self._worker(name, fn), name=f"worker-{name}"))
        from .watch import ConfigWatcher
        self.watcher = ConfigWatcher(rt, on_reload=self.warn_settings)
        self.warn_settings()
        self.tasks.append(asyncio.create_task(self.watcher.run(), name="config-watch"))
        register_local_handlers(self)
        register_handlers(self)
        self.control_server = await control.serve(rt)
        self.submit_server = await localsubmit.serve(rt)
        await rt.run_blocking(self._write_run_files)
        self.started.set()

    async def _watch_parent(self) -> None:
        """A secondary stops (gracefully) when its primary is gone, even after SIGKILL."""
        parent = os.getppid()
        while not self.runtime.stopping.is_set():
            await asyncio.sleep(0.5)
            if os.getppid() != parent:
                self.runtime.log.info("primary process gone; stopping")
                self.runtime.stopping.set()

    def spawn_secondaries(self, count: int) -> None:
        for slot in range(1, min(count, MAX_SLOTS - 1) + 1):
            self._spawn(slot)
        self.runtime.log.info("started %d more serving processes: %s", len(self.children),
                              ", ".join(str(c.pid) for c in self.children.values()))
        self.tasks.append(asyncio.create_task(self._watch_children(), name="watch-children"))

    def _spawn(self, slot: int) -> None:
        import json
        import subprocess
        ports = {name: addrs[0][1] for name, addrs in self.runtime.ports.items() if addrs}
        spec = json.dumps({"ports": ports, "slot": slot, "stderr": self.log_stderr})
        self.children[slot] = subprocess.Popen(
            [sys.executable, "-m", "mailctl", "--root", str(self.root.path), "serve", "--secondary", spec],
            stdin=subprocess.DEVNULL)

    async def _watch_children(self) -> None:
        """A secondary that dies is replaced (its counts forgotten), as Postfix's master does."""
        rt = self.runtime
        while not rt.stopping.is_set():
            await asyncio.sleep(1.0)
            for slot, child in list(self.children.items()):
                if child.poll() is None or rt.stopping.is_set():
                    continue
                rt.log.warning("serving process %d exited with status %s; starting a new one",
                               child.pid, child.returncode)
                self.counts.clear_slot(slot)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(control.socket_path(self.root, slot))
                self._spawn(slot)

    async def ask_children(self, command: str) -> list[dict]:
        """Ask every secondary over its control socket; one that does not answer is skipped."""
        async def ask(slot):
            try:
                return await control.ask(control.socket_path(self.root, slot), command)
            except (OSError, MailError, asyncio.TimeoutError, ValueError):
                return None
        replies = await asyncio.gather(*(ask(slot) for slot in self.children))
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

    # -- status --
    def local_status(self) -> dict:
        rt = self.runtime
        return {"pid": os.getpid(), "connections_total": dict(rt.sessions.total_opened),
                "counters": dict(rt.counters)}

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
        parts = [self.local_status()] + await self.ask_children("status-local")
        return {"pid": os.getpid(), "root": str(self.root.path), "started": rt.started,
                "uptime_s": int(rt.clock() - rt.started), "listeners": listeners,
                "processes": [os.getpid()] + [c.pid for c in self.children.values()],
                "connections": rt.sessions.count(),
                "connections_total": _add_up(p["connections_total"] for p in parts),
                "queue_size": queue_size, "counters": _add_up(p["counters"] for p in parts),
                "ports": {name: addrs[0][1] for name, addrs in rt.ports.items() if addrs},
                "config_problems": list(self.watcher.last_problems) if self.watcher else []}

    # -- stop --
    async def stop(self, deadline: float = STOP_DEADLINE_S) -> None:
        """Stop accepting, let transactions in flight finish (up to deadline), then close."""
        rt = self.runtime
        rt.stopping.set()
        rt.log.info("stopping: no new connections; waiting up to %gs for transactions in flight", deadline)
        for child in self.children.values():
            with contextlib.suppress(OSError):
                child.send_signal(signal.SIGTERM)
        for servers in self.servers.values():
            for s in servers:
                s.close()
        for server in (self.control_server, self.submit_server):
            if server is not None:
                server.close()
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
        for child in self.children.values():
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(None, child.wait, deadline + 5)
        if self.counts is not None:
            rt.sessions.shared = None          # connections closed after this count nowhere
            self.counts.close()
        if self.secondary_ports is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(control.socket_path(self.root, self.slot))
            rt.log.info("stopped")
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.root.run_dir / PORTS_FILE)
        for path in (control.socket_path(self.root), localsubmit.socket_path(self.root)):
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
    """The primary's control socket: the whole server."""
    async def status(rt, **_):
        return await service.status()

    async def reload(rt, **_):
        problems = await service.watcher.reload("mailctl reload")
        if problems:
            raise MailError(f"reload failed, still serving the last good configuration: {problems[0]}"
                            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        for child in service.children.values():        # each secondary re-reads the files itself
            with contextlib.suppress(OSError):
                child.send_signal(signal.SIGHUP)
        return {"reloaded": True}

    async def who(rt, **_):
        sessions = [s.public() for s in rt.sessions.list()]
        for part in await service.ask_children("who-local"):
            sessions += part.get("sessions", [])
        return {"sessions": sessions}

    async def stop(rt, **_):
        asyncio.get_running_loop().call_later(0.05, rt.stopping.set)
        return {"stopping": True, "pid": os.getpid()}

    async def queue_changed(rt, **_):
        return {}

    control.register("status", status)
    control.register("reload", reload)
    control.register("who", who)
    control.register("stop", stop)
    control.HANDLERS.setdefault("queue-changed", queue_changed)


async def run(root: Root, ready=None, processes: int = 1, secondary: dict | None = None,
              log_stderr: bool = False) -> int:
    """Serve until SIGTERM/SIGINT or a 'stop' command; SIGHUP reloads. secondary: the
    ports and slot a primary gave this process."""
    # The event loop thread gives the GIL back to disk threads at every syscall; a short
    # switch interval lets it have the GIL back sooner (measured: ~15% more messages/s).
    sys.setswitchinterval(0.001)
    if secondary is None:
        service = Service(root)
    else:
        service = Service(root, ports=secondary["ports"], slot=secondary["slot"])
    service.log_stderr = log_stderr
    rt = service.runtime
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, rt.stopping.set)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(service.watcher.reload("SIGHUP")))
    try:
        await service.start()
    except BaseException:
        await service.stop(deadline=0)
        raise
    if processes > 1 and secondary is None:
        service.spawn_secondaries(processes - 1)
    if ready is not None:
        ready(service)
    await rt.stopping.wait()
    await service.stop()
    rt.close()
    return 0


def process_count(settings, requested: int | None) -> int:
    """--processes, else server.processes; 0 = one per CPU core."""
    n = settings.server.processes if requested is None else requested
    if n <= 0:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n, MAX_SLOTS))


def serve(root: Root, stderr: bool = True, ready=None, processes: int | None = None) -> int:
    """`mailctl serve`: foreground, logs to stderr and log/. More than one process: the
    others serve the same listeners (SO_REUSEPORT) and share the counts for limits."""
    root.require()
    from . import settings as settings_mod
    settings = settings_mod.load(root.config_file, "mailctl.toml")
    logs.setup(root, settings.server.log_level, stderr=stderr)
    processes = process_count(settings, processes)
    pid_path = root.run_dir / PID_FILE
    root.run_dir.mkdir(parents=True, exist_ok=True)
    lock = root.lock("serve", timeout=0.1)
    try:
        lock.acquire()
    except MailError:
        raise MailError(f"another mailctl server is already running on {root.path}; "
                        f"see 'mailctl status'") from None
    atomic_write(pid_path, f"{os.getpid()}\n")
    _tune_gc()
    try:
        return asyncio.run(run(root, ready, processes, log_stderr=stderr))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_path)
        lock.release()
        logs.stop()


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


def serve_secondary(root: Root, spec: dict) -> int:
    """A serving process started by a primary: listeners only; logs to the same log/mailctl.log
    (the primary rotates it)."""
    from . import settings as settings_mod
    settings = settings_mod.load(root.config_file, "mailctl.toml")
    logs.setup(root, settings.server.log_level, stderr=bool(spec.get("stderr")), rotate=False)
    _tune_gc()
    try:
        return asyncio.run(run(root, secondary=spec))
    finally:
        logs.stop()
