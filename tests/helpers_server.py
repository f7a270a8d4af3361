"""Fixtures to run a real server over a temporary root, for every protocol's tests.

    root = make_root(tmp_path, accounts={"alice@example.com": "secret"})
    with running_server(root) as srv:          # in-process, in a thread
        smtplib.SMTP("127.0.0.1", srv.ports["smtp"])
    with serve_process(root) as proc:           # a real `mailctl serve` subprocess
        proc.ports["imap"]; proc.kill(); ...

Listeners bind 127.0.0.1 on port 0 (a free port); the ports in use come from the running
service (in-process) or run/ports.toml (subprocess).
"""
from __future__ import annotations

import asyncio
import contextlib
import imaplib
import json
import os
import poplib
import pwd
import socket
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

from engine import directory_edit, newroot, passwords, settings as settings_mod
from engine.root import Root, atomic_write

REPO = Path(__file__).resolve().parent.parent
LISTENERS = tuple(settings_mod.LISTENERS)

_hash_cache: dict[str, str] = {}


def password_hash(password: str) -> str:
    if password not in _hash_cache:
        _hash_cache[password] = passwords.hash_password(password)
    return _hash_cache[password]


def write_settings(root: Root, values: dict) -> None:
    """Rewrite mailctl.toml with test listeners (127.0.0.1, port 0) plus `values` ('section.key': v)."""
    merged = {}
    for name in LISTENERS:
        merged[f"listeners.{name}.bind"] = ["127.0.0.1"]
        merged[f"listeners.{name}.port"] = 0
    merged["auth.failure_delay_s"] = 0.05
    merged["limits.pregreet_wait_s"] = 0.02       # short, but the pregreet wait still runs
    # served as the user running the tests (root in CI), in roots that user owns;
    # tests/test_privileges.py serves as an unprivileged user
    merged["server.user"] = pwd.getpwuid(os.geteuid()).pw_name
    merged.update(values)
    atomic_write(root.config_file, settings_mod.render_sample(merged))


def make_root(path, domains=("example.com",), accounts: dict | None = None,
              settings: dict | None = None) -> Root:
    """A fresh root with domains and accounts {address: password}; settings as 'section.key': value."""
    root = Root(Path(path) / "root")
    newroot.init_root(root, hostname="localhost", high_ports=True)
    write_settings(root, settings or {})
    cfg = settings_mod.load(root.config_file)
    for d in domains:
        directory_edit.add_domain(root, cfg, d)
    for address, password in (accounts or {}).items():
        directory_edit.add_account(root, cfg, address, password_hash(password))
    return root


class InProcessServer:
    def __init__(self, root: Root):
        self.root = root
        self.service = None
        self.runtime = None
        self.ports: dict[str, int] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 15.0) -> "InProcessServer":
        from engine import logs
        logs.quiet_libraries()
        self._thread = threading.Thread(target=self._main, name="mailctl-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("server did not start in time")
        if self._error:
            raise self._error
        return self

    def _main(self) -> None:
        from engine.service import Service

        async def main():
            self.loop = asyncio.get_running_loop()
            try:
                self.service = Service(self.root)
                self.runtime = self.service.runtime
                await self.service.start()
                self.ports = {n: a[0][1] for n, a in self.runtime.ports.items() if a}
            except BaseException as e:
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            await self.runtime.stopping.wait()
            await self.service.stop(deadline=5)
            self.runtime.close()

        asyncio.run(main())

    def call(self, coro_fn, timeout: float = 10.0):
        """Run a coroutine function on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop is not None and self.runtime is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.runtime.stopping.set)
        if self._thread is not None:
            self._thread.join(20)


@contextlib.contextmanager
def running_server(root: Root):
    server = InProcessServer(root).start()
    try:
        yield server
    finally:
        server.stop()


def read_ports(root: Root, pid: int | None = None) -> dict[str, int] | None:
    try:
        data = tomllib.loads((root.run_dir / "ports.toml").read_text())
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return None
    if pid is not None and data.get("pid") != pid:
        return None
    return {name: addrs[0]["port"] for name, addrs in data.get("ports", {}).items() if addrs}


class ServeProcess:
    """`mailctl serve` as a subprocess."""

    def __init__(self, root: Root, extra_env: dict | None = None, args: tuple[str, ...] = (),
                 preexec_fn=None):
        self.root = root
        self.args = tuple(args)
        self.preexec_fn = preexec_fn          # runs in the child before exec (e.g. resource limits)
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **(extra_env or {})}
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}

    def start(self, timeout: float = 20.0) -> "ServeProcess":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.root.run_dir / "ports.toml")
        self.proc = subprocess.Popen([sys.executable, "-m", "mailctl", "--root", str(self.root.path), "serve",
                                      *self.args], env=self.env, cwd=str(REPO), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=self.preexec_fn)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mailctl serve exited {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            ports = read_ports(self.root, self.proc.pid)
            if ports:
                self.ports = ports
                threading.Thread(target=self._drain, daemon=True).start()
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("mailctl serve did not start in time")

    def _drain(self) -> None:
        with contextlib.suppress(Exception):
            for _ in self.proc.stderr:
                pass

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 40.0) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout)
        return self.proc.returncode if self.proc else 0


@contextlib.contextmanager
def serve_process(root: Root, extra_env: dict | None = None, args: tuple[str, ...] = (), preexec_fn=None):
    proc = ServeProcess(root, extra_env, args, preexec_fn).start()
    try:
        yield proc
    finally:
        with contextlib.suppress(Exception):
            proc.terminate(20)
        proc.kill()


def mailctl(root: Root, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the mailctl CLI as a subprocess."""
    return subprocess.run([sys.executable, "-m", "mailctl", "--root", str(root.path), *args],
                          input=input, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=str(REPO))


def serve_status(root: Root) -> dict:
    """`mailctl status --json` of a running server."""
    out = mailctl(root, "status", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_for_processes(root: Root, n: int, timeout: float = 15, without: tuple[int, ...] = ()) -> list[int]:
    """The pids of n serving processes, once that many answer (none of them in without)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = serve_status(root)
        pids = status.get("processes", [])
        answering = {p["pid"] for p in status.get("serving", [])}
        if len(pids) == n and answering == set(pids) and not answering & set(without):
            return pids
        time.sleep(0.1)
    raise AssertionError(f"not {n} serving processes: {serve_status(root)}")


def connect_from(source_ip: str, port: int, timeout: float = 20) -> socket.socket:
    """A TCP connection to the test server from another loopback address (127.0.x.y), so
    limits and bans per address don't leak between tests."""
    return socket.create_connection(("127.0.0.1", port), timeout, source_address=(source_ip, 0))


def _from_address(client_class):
    """A stdlib client class (imaplib.IMAP4, poplib.POP3) that connects from source_ip."""
    class FromAddress(client_class):
        def __init__(self, source_ip: str, port: int):
            self.source_ip = source_ip
            super().__init__("127.0.0.1", port, timeout=20)

        def _create_socket(self, timeout):
            return connect_from(self.source_ip, self.port, timeout)
    return FromAddress


IMAP4From = _from_address(imaplib.IMAP4)
POP3From = _from_address(poplib.POP3)


def tls_context():
    """A client TLS context that accepts the test root's self-signed certificate."""
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def imap_sessions_in_two_processes(root: Root, port: int, user: str, password: str) -> tuple:
    """Two logged-in imaplib sessions that the kernel gave to different serving processes
    (`server.processes` of 2 or more), told apart in `mailctl who` by the loopback
    address each one connects from (127.0.0.2, .3, ... then 127.0.2.2, ...)."""
    by_pid: dict[int, imaplib.IMAP4] = {}
    # Both processes accept from one listening socket: under load the same one may win
    # many times running, so a session that landed twice is logged out at once (holding
    # it would run into the per-account session limit) and the next try waits a little.
    for n in range(2, 120):
        ip = f"127.0.0.{n}" if n < 40 else f"127.0.2.{n - 38}"
        c = IMAP4From(ip, port)
        c.login(user, password)
        who = mailctl(root, "who", "--json")
        assert who.returncode == 0, who.stderr
        data = json.loads(who.stdout)
        sessions = data["sessions"] if isinstance(data, dict) else data
        pid = next(s["pid"] for s in sessions if s["ip"] == ip)
        if pid in by_pid:
            c.logout()
            time.sleep(0.05)
        else:
            by_pid[pid] = c
        if len(by_pid) == 2:
            break
    assert len(by_pid) == 2, "the kernel never gave a session to the second serving process"
    return tuple(by_pid.values())
