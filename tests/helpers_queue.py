"""Helpers for queue and outbound tests: a root wired to the test DNS server and sinks,
a runtime with an injectable clock, and a runner driven pass by pass."""
from __future__ import annotations

import asyncio
import email
import email.policy

import tomlkit

from conftest import PASSWORD, run_cli
from engine.outbound.runner import Runner
from engine.queue import Queue
from engine.root import Root, atomic_write
from engine.runtime import Runtime


class Clock:
    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def configure(root: Root, values: dict) -> None:
    """Set 'section.key' values in mailctl.toml (keeping the comments)."""
    doc = tomlkit.parse(root.config_file.read_text())
    for dotted, value in values.items():
        *path, key = dotted.split(".") if not dotted.startswith("routes.") else ["routes", dotted[7:].rsplit(".", 1)[0], dotted.rsplit(".", 1)[1]]
        node = doc
        for part in path:
            if part not in node:
                node[part] = tomlkit.table()
            node = node[part]
        node[key] = value
    atomic_write(root.config_file, tomlkit.dumps(doc))


def add_local(root: Root, domain: str = "example.com", users=("alice", "bob")) -> None:
    assert run_cli(root, "domain", "add", domain).code == 0
    for u in users:
        r = run_cli(root, "account", "add", f"{u}@{domain}", "--password-stdin", input=PASSWORD)
        assert r.code == 0, r.err


def base_settings(dns, port: int, **extra) -> dict:
    values = {"queue.nameservers": [dns.address], "queue.smtp_port": port, "queue.dns_timeout_s": 2,
              "queue.connect_timeout_s": 2, "queue.command_timeout_s": 10,
              "queue.retry_minutes": [0, 1, 2], "queue.delay_notice_hours": 4,
              "server.postmaster": "postmaster@example.com"}
    values.update(extra)
    return values


class Harness:
    """A runtime and runner over a root; pass() runs one queue pass to completion."""

    def __init__(self, root: Root, clock: Clock | None = None):
        self.root = root
        self.clock = clock or Clock()
        self.loop = asyncio.new_event_loop()
        self.runtime = Runtime.for_tests(root, clock=self.clock)
        self.runner = Runner(self.runtime, clock=self.clock)
        self.queue = Queue(root)
        self.loop.run_until_complete(self.runner.start())

    def reload(self) -> None:
        problems = self.runtime.reload()
        assert not problems, problems

    def run(self, force: bool = False) -> int:
        return self.loop.run_until_complete(self.runner.run_once(force))

    def enqueue(self, sender: str, recipients: list[str], data: bytes | None = None, **kw) -> str:
        data = data or message(sender, recipients)
        return self.queue.enqueue(sender, recipients, data, now=self.clock(), **kw)

    def close(self) -> None:
        self.loop.run_until_complete(self.runner.pool.prune(everything=True))
        self.loop.close()
        self.runtime.close()


def message(sender: str, recipients: list[str], subject: str = "test", body: str = "hello\r\n") -> bytes:
    return (f"From: <{sender or 'nobody@example.com'}>\r\nTo: {', '.join(recipients)}\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@example.com>\r\n\r\n{body}").encode()


def inbox(root: Root, address: str) -> list[bytes]:
    local, _, domain = address.partition("@")
    new = root.mail_dir / domain / local / "new"
    cur = root.mail_dir / domain / local / "cur"
    out = []
    for d in (new, cur):
        if d.exists():
            out += [p.read_bytes() for p in sorted(d.iterdir())]
    return out


def parse_dsn(data: bytes) -> tuple[email.message.Message, list[dict]]:
    """The DSN and its per-recipient fields, parsed with the stdlib email package."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    status = [p for p in parts if p.get_content_type() == "message/delivery-status"][0]
    groups = status.get_payload()          # list of Message: per-message, then per-recipient
    return msg, [dict(g.items()) for g in groups[1:]]


_TEMPLATE: dict = {}


def local_root(tmp_path_factory, tmp_path) -> Root:
    """A root with example.com (alice, bob), copied from one made once per session
    (account creation hashes passwords, which is slow on purpose)."""
    import shutil
    from engine.newroot import init_root
    if "path" not in _TEMPLATE:
        base = tmp_path_factory.mktemp("queue-template") / "mailroot"
        r = Root(base)
        init_root(r, hostname="mail.example.com", high_ports=True)
        add_local(r)
        _TEMPLATE["path"] = base
    dest = tmp_path / "mailroot"
    shutil.copytree(_TEMPLATE["path"], dest, symlinks=True)
    return Root(dest)
