"""IMAP and POP3 servers in-process for tests: a root with accounts, the listeners on
127.0.0.1 port 0 in an asyncio loop on a background thread, and blocking clients
(imaplib, poplib, imapclient) talking to them."""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from engine import settings as settings_mod
from engine.directory_edit import add_account, add_domain
from engine.maildir import Maildir
from engine.passwords import hash_password
from engine.root import Root
from engine.runtime import Runtime
from helpers_queue import configure  # noqa: F401  (re-exported: one way to set mailctl.toml keys)

PASSWORD = "secret-pass-1"
DOMAIN = "example.com"
_HASH = None


def password_hash() -> str:
    global _HASH
    if _HASH is None:
        _HASH = hash_password(PASSWORD)
    return _HASH



def add_users(root: Root, users=("alice", "bob"), domain: str = DOMAIN, quota_mb: int | None = None) -> None:
    settings = settings_mod.load(root.config_file)
    with contextlib.suppress(Exception):
        add_domain(root, settings, domain)
    for user in users:
        add_account(root, settings, f"{user}@{domain}", password_hash(), quota_mb=quota_mb)


def maildir(root: Root, user: str = "alice", domain: str = DOMAIN) -> Maildir:
    return Maildir.for_account(root, domain, user)


def message(subject: str = "hello", body: str = "body text", sender: str = "carol@example.org",
            to: str = "alice@example.com", extra: str = "") -> bytes:
    return (f"From: Carol <{sender}>\nTo: {to}\nSubject: {subject}\n"
            f"Date: Mon, 02 Jan 2023 10:00:00 +0000\nMessage-ID: <{abs(hash(subject + body))}@example.org>\n"
            f"{extra}\n{body}\n").encode()


@dataclass
class Servers:
    runtime: Runtime
    loop: asyncio.AbstractEventLoop
    ports: dict = field(default_factory=dict)
    servers: list = field(default_factory=list)
    thread: threading.Thread | None = None

    def port(self, name: str) -> int:
        return self.ports[name]

    def call(self, coro_fn, *args, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro_fn(*args), self.loop).result(timeout)

    def reload(self) -> None:
        problems = self.runtime.reload()
        assert not problems, problems

    def stop(self) -> None:
        async def shutdown():
            self.runtime.stopping.set()
            for s in self.servers:
                s.close()
            for session in list(self.runtime.sessions.list()):
                if session.closer:
                    session.closer()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if others:
                done, pending = await asyncio.wait(others, timeout=5)
                for t in pending:
                    t.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=2)
        with contextlib.suppress(Exception):
            self.call(shutdown, timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.runtime.close()


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@contextlib.contextmanager
def running(root: Root, protocols=("imap", "imaps", "pop3", "pop3s")):
    """Start the named listeners on 127.0.0.1 with free ports; yield a Servers."""
    from engine.imap import server as imap_server
    from engine.pop3 import server as pop3_server
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder = {}

    def thread_main():
        asyncio.set_event_loop(loop)
        holder["runtime"] = Runtime.for_tests(root)
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=thread_main, daemon=True)
    t.start()
    ready.wait(10)
    srv = Servers(holder["runtime"], loop, thread=t)
    try:
        for name in protocols:
            conf = getattr(srv.runtime.settings.listeners, name)
            listener = SimpleNamespace(bind=["127.0.0.1"], port=0, tls=conf.tls, enabled=True)
            module = imap_server if name.startswith("imap") else pop3_server
            started = srv.call(module.start, srv.runtime, name, listener)
            srv.servers += started
            srv.ports[name] = started[0].sockets[0].getsockname()[1]
        yield srv
    finally:
        srv.stop()


def fast_settings(**extra) -> dict:
    values = {"auth.failure_delay_s": 0, "auth.allow_plaintext": True, "auth.ban_after_failures": 0}
    values.update(extra)
    return values


# -- pytest fixtures (import them into a test module to use them) --------------------

_user_ids = itertools.count(1)


def new_root(path) -> Root:
    from engine.newroot import init_root
    root = Root(path)
    init_root(root, hostname="mail.example.com", high_ports=True)
    configure(root, fast_settings())
    settings = settings_mod.load(root.config_file)
    add_domain(root, settings, DOMAIN)
    return root


@pytest.fixture(scope="module")
def mailserver(tmp_path_factory):
    root = new_root(tmp_path_factory.mktemp("mail") / "root")
    with running(root) as srv:
        srv.root = root
        yield srv


@pytest.fixture
def user(mailserver) -> str:
    """A fresh account on the module's server; returns its address."""
    name = f"user{next(_user_ids)}"
    add_users(mailserver.root, [name])
    mailserver.reload()
    return f"{name}@{DOMAIN}"


def box(srv, address: str) -> Maildir:
    local, domain = address.split("@")
    return Maildir.for_account(srv.root, domain, local)


def imap(srv, address: str | None = None, port_name: str = "imap"):
    import imaplib
    if port_name == "imaps":
        c = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=client_tls(), timeout=20)
    else:
        c = imaplib.IMAP4("127.0.0.1", srv.port(port_name), timeout=20)
    if address:
        c.login(address, PASSWORD)
    return c
