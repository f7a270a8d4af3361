"""The shared state of a running server (every listener and worker plugs in here).

root, settings and directory (swapped whole on reload, so a session reads one consistent
snapshot), the TLS context (reloaded when the files change), a bounded thread pool for
all disk work, the ban list, the registry of open sessions, the log and the stop event.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any, Callable

from . import memtrim, settings as settings_mod
from .accept import Pipeline
from .access.entries import AccessEntries
from .bans import Bans
from .directory import LISTING_PROBLEM, Directory
from .diskpool import DiskPool
from .errors import ConfigError, MailError
from .logins import Logins, dummy_hash
from .maildir import set_tmp_max_age
from .overload import FdReserve
from .root import Root
from .sharedcounts import PROTOCOLS, SharedCounts

log = logging.getLogger("mailctl")


# -- sessions --------------------------------------------------------------------

class Session:
    """One open connection. Its protocol, IP and user are counted in the shared counts
    (every serving process sees them) while it is open."""

    def __init__(self, id: int, protocol: str, peer_ip: str, started: float, registry: "Sessions"):
        self.id = id
        self.protocol = protocol
        self.peer_ip = peer_ip
        self.started = started
        self.registry = registry
        self._user = ""
        self.busy = False            # inside a transaction that a graceful stop lets finish
        self.closer: Callable[[], None] | None = None   # ends the session (graceful stop)
        self.info: dict = {}

    @property
    def user(self) -> str:
        return self._user

    @user.setter
    def user(self, value: str) -> None:
        shared = self.registry.shared
        if shared is not None and self.id in self.registry._items:
            if self._user:
                shared.user_added(self.protocol, self._user, -1)
            if value:
                shared.user_added(self.protocol, value, 1)
            shared.adjust(self.registry.login_key(self.protocol, self._user, self.peer_ip), -1)
            shared.adjust(self.registry.login_key(self.protocol, value, self.peer_ip), 1)
        self._user = value

    def close(self) -> None:
        self.registry._remove(self)

    def public(self) -> dict:
        return {"id": self.id, "protocol": self.protocol, "ip": self.peer_ip, "user": self.user,
                "since": self.started, "busy": self.busy, "pid": os.getpid()}


class Sessions:
    """Open connections of every protocol, for limits, `mailctl who` and `mailctl status`.

    The sessions listed are this process's; the counts, once shared counts are attached
    (a running service), are those of every serving process of the root."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._items: dict[int, Session] = {}
        self._ids = itertools.count(1)
        self.clock = clock
        self.total_opened: dict[str, int] = {}
        self.shared: SharedCounts | None = None

    def open(self, protocol: str, peer_ip: str) -> Session:
        s = Session(next(self._ids), protocol, peer_ip, self.clock(), self)
        self._items[s.id] = s
        self.total_opened[protocol] = self.total_opened.get(protocol, 0) + 1
        if self.shared is not None:
            self.shared.opened(protocol, peer_ip)
            self.shared.adjust(self.login_key(protocol, "", peer_ip), 1)
        return s

    def _remove(self, s: Session) -> None:
        if self._items.pop(s.id, None) is not None and self.shared is not None:
            self.shared.closed(s.protocol, s.peer_ip)
            self.shared.adjust(self.login_key(s.protocol, s.user, s.peer_ip), -1)
            if s.user:
                self.shared.user_added(s.protocol, s.user, -1)

    @staticmethod
    def login_key(protocol: str, user: str, ip: str) -> str:
        """The shared count of one protocol's connections from one IP that are not logged
        in (user ''), or that are logged in as one user."""
        return f"{protocol} {user.lower() or '-'} at {ip}"

    def count_at(self, protocols: tuple[str, ...], ip: str, user: str = "") -> int:
        """Open sessions from one IP not logged in (user ''), or logged in as `user`."""
        if self.shared is not None:
            return sum(self.shared.current(self.login_key(p, user, ip)) for p in protocols)
        return sum(1 for s in self._items.values()
                   if s.protocol in protocols and s.peer_ip == ip and s.user.lower() == user.lower())

    def list(self, protocol: str | None = None) -> list[Session]:
        return [s for s in self._items.values() if protocol is None or s.protocol == protocol]

    def count(self, protocols: tuple[str, ...] | None = None, ip: str | None = None,
              user: str | None = None) -> int:
        """Open sessions of these protocols (all when None), from one IP or of one user."""
        if self.shared is not None:
            protocols = protocols or PROTOCOLS
            if user is not None:
                return self.shared.count_user(protocols, user)
            if ip is not None:
                return self.shared.count_ip(protocols, ip)
            return self.shared.total(protocols)
        return sum(1 for s in self._items.values()
                   if (protocols is None or s.protocol in protocols) and (ip is None or s.peer_ip == ip)
                   and (user is None or s.user.lower() == user.lower()))


# -- TLS ---------------------------------------------------------------------------

class TLSFiles:
    """One server-side SSLContext whose certificate is reloaded in place when the files change.

    Reusing the same context object means listeners created once (implicit TLS) pick
    up a renewed certificate for every new handshake.
    """

    def __init__(self, root: Root):
        self.root = root
        self._ctx: ssl.SSLContext | None = None
        self._stamp = None
        self._checked = 0.0

    def paths(self, settings) -> tuple[Path, Path]:
        def place(p: str) -> Path:
            path = Path(p)
            return path if path.is_absolute() else self.root.path / path
        return place(settings.tls.cert), place(settings.tls.key)

    def context(self, settings) -> ssl.SSLContext:
        now = time.monotonic()
        if self._ctx is not None and now - self._checked < 1.0:
            return self._ctx
        self._checked = now
        cert, key = self.paths(settings)
        try:
            stamp = tuple((str(p), os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in (cert, key)) + (
                settings.tls.min_version,)
        except OSError as e:
            if self._ctx is not None:
                return self._ctx
            raise MailError(f"{e.filename}: cannot read TLS file ({e.strerror}); set tls.cert and tls.key "
                            f"in mailctl.toml") from None
        if stamp == self._stamp and self._ctx is not None:
            return self._ctx
        ctx = self._ctx or ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if settings.tls.min_version == "TLSv1.3"
                               else ssl.TLSVersion.TLSv1_2)
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            if self._ctx is not None:
                log.error("tls: %s: cannot load certificate or key (%s); keeping the previous one", cert, e)
                self._stamp = stamp
                return self._ctx
            raise MailError(f"{cert}: cannot load TLS certificate/key ({e}); fix tls.cert and tls.key") from None
        if self._ctx is not None:
            log.info("tls: certificate reloaded from %s", cert)
        self._ctx, self._stamp = ctx, stamp
        return ctx


# -- the runtime -----------------------------------------------------------------------

class Runtime:
    def __init__(self, root: Root, settings, directory: Directory, *,
                 clock: Callable[[], float] = time.time, workers: int = 8):
        self.root = root
        self.settings = settings
        self.directory = directory
        self.clock = clock
        set_tmp_max_age(settings.mailbox.tmp_max_age_hours * 3600)
        self.log = log
        self.bans = Bans(root, settings, clock)
        self.access = AccessEntries(root, clock)        # state/access.toml (mailctl access)
        self.sessions = Sessions(clock)
        self.logins = Logins(self)
        self.stopping = asyncio.Event()
        self.started = clock()
        self.ports: dict[str, list[tuple[str, int]]] = {}       # listener -> bound (host, port)
        self.inherited: dict[str, list] = {}      # listener -> sockets the supervisor bound
        self.counters: dict[str, int] = {}
        self.generation = 0           # bumped on every successful reload
        self.pipeline = Pipeline()    # the acceptance pipeline's stages (engine/accept)
        self._tls = TLSFiles(root)
        self._pool = DiskPool(workers, "mailctl-disk")
        self.fd_reserve: FdReserve | None = None     # made by the first listen()
        self._pool.submit(dummy_hash)     # made now, so the first unknown user takes no longer

    @classmethod
    def load(cls, root: Root, **kw) -> "Runtime":
        root.require()
        settings = settings_mod.load(root.config_file, "mailctl.toml")
        directory = Directory.load(root, settings)
        return cls(root, settings, directory, **kw)

    @classmethod
    def for_tests(cls, root: Root, **kw) -> "Runtime":
        """A runtime over a root without the service around it (in-process tests)."""
        return cls.load(root, **kw)

    # -- services for protocol code --
    def ssl_context(self) -> ssl.SSLContext:
        return self._tls.context(self.settings)

    async def run_blocking(self, fn: Callable, *args) -> Any:
        """Run disk work in the bounded pool, never on the event loop thread."""
        return await self._pool.run(fn, *args)

    async def auth_delay(self) -> None:
        await asyncio.sleep(self.settings.auth.failure_delay_s)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    async def authenticate(self, user: str, password: str, ip: str, protocol: str):
        """Check a login against the directory (engine.logins). Returns the Account, or None
        after the failure delay (and a ban when the IP failed too often). Never logs the password."""
        return await self.logins.check(user, password, ip, protocol)

    async def listen(self, name: str, protocol_factory: Callable, listener, ssl=None,
                     busy_reply: bytes = b"") -> list:
        """Serve a listener on the sockets the supervisor bound for it (self.inherited), or
        on new ones on every address in listener.bind (one process serving alone). The
        ports in use are kept in self.ports. busy_reply: what a client hears when the
        process is out of file descriptors (engine/overload.py); over implicit TLS the
        connection is just closed."""
        from . import listeners
        socks = self.inherited.pop(name, None) or listeners.bind(name, listener)
        loop = asyncio.get_running_loop()
        if self.fd_reserve is None:          # the first listener: this process serves
            self.fd_reserve = FdReserve(loop, self.log)
            memtrim.setup()
        servers: list = []
        try:
            for sock in socks:
                servers.append(await loop.create_server(
                    protocol_factory, sock=sock, ssl=ssl, backlog=listeners.BACKLOG,
                    ssl_handshake_timeout=30 if ssl else None))
                self.fd_reserve.watch(sock, b"" if ssl else busy_reply)
        except BaseException:
            for s in servers:
                s.close()
            listeners.close(socks)
            raise
        self.ports[name] = listeners.addresses(socks)
        return servers

    # -- reload --
    def reload(self) -> list[str]:
        """Read mailctl.toml and domains/ again (blocking). Each file that cannot be read
        or is invalid keeps its last good version (mailctl.toml its settings, a domain file
        its domain); the others take effect. Returns the problems as 'file:line: problem'."""
        problems: list[str] = []
        settings = self.settings
        try:
            settings = settings_mod.load(self.root.config_file, "mailctl.toml")
        except ConfigError as e:
            problems.extend(e.problems)
        except MailError as e:
            problems.append(str(e))
        except Exception as e:      # whatever a file holds, reload reports it and goes on
            problems.append(f"mailctl.toml: cannot be loaded: {describe(e)}")
        try:
            directory, found = Directory.load_with_problems(self.root, settings)
            if found:
                directory = directory.with_last_good(found, self.directory)
        except Exception as e:
            found = [f"{LISTING_PROBLEM} cannot be loaded: {describe(e)}"]
            directory = Directory(self.directory.domains, settings)
        problems.extend(found)
        self.settings, self.directory = settings, directory
        self.bans.settings = settings
        set_tmp_max_age(settings.mailbox.tmp_max_age_hours * 3600)
        self.generation += 1
        return problems

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def describe(e: BaseException) -> str:
    """One line for an unexpected error: its kind and message, never a traceback."""
    text = (getattr(e, "strerror", None) or str(e)).splitlines()[0:1]
    return f"{type(e).__name__}: {text[0]}"[:300] if text else type(e).__name__
