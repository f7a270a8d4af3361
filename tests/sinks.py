"""aiosmtpd sinks for outbound tests: record what arrives, answer 4xx/5xx on command.

    sink = Sink("127.0.0.2", port=0)        # port 0: the OS picks; share it with Sink(ip, sink.port)
    sink.rcpt_replies["bad@example.net"] = "550 5.1.1 User unknown"
    sink.temp_failures["later@example.net"] = 1      # 451 this many times, then accept
    sink.one_domain_per_transaction = True            # 451 4.3.0 for a second domain (Gmail-like)
    sink.messages -> [Received(sender, recipients, data, tls, auth_user)]
"""
from __future__ import annotations

import errno
import threading
import time
from dataclasses import dataclass

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    sender: str
    recipients: list
    data: bytes
    tls: bool
    auth_user: str
    peer: str = ""
    helo: str = ""


class _Handler:
    def __init__(self, sink: "Sink"):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.sink.pipelining:
            # aiosmtpd reads commands one by one from the stream, so pipelined
            # commands already work; say so, so clients use it (RFC 2920)
            responses = responses[:-1] + ["250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.sink.mail_reply:
            return self.sink.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        s = self.sink
        with s.lock:
            s.rcpt_log.append(address)
            reply = s.rcpt_replies.get(address.lower())
            if reply:
                return reply
            left = s.temp_failures.get(address.lower(), 0)
            if left > 0:
                s.temp_failures[address.lower()] = left - 1
                return "451 4.3.0 Try again later"
        if s.one_domain_per_transaction and envelope.rcpt_tos:
            first = envelope.rcpt_tos[0].rpartition("@")[2].lower()
            if address.rpartition("@")[2].lower() != first:
                return "451 4.3.0 Multiple destination domains per transaction is unsupported"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        s = self.sink
        if s.data_reply:
            return s.data_reply
        if s.data_delay:
            import asyncio
            await asyncio.sleep(s.data_delay)
        auth = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else ""
        with s.lock:
            peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
            s.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content
                                       or envelope.content, bool(session.ssl), auth, peer, session.host_name or ""))
            s.transactions += 1
        return "250 2.0.0 Ok: queued"


class Sink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls_context=None, auth: dict | None = None,
                 require_auth: bool = False, pipelining: bool = True):
        self.pipelining = pipelining
        self.lock = threading.Lock()
        self.messages: list[Received] = []
        self.rcpt_log: list[str] = []
        self.rcpt_replies: dict[str, str] = {}
        self.temp_failures: dict[str, int] = {}
        self.mail_reply = ""
        self.data_reply = ""
        self.data_delay = 0.0
        self.one_domain_per_transaction = False
        self.transactions = 0
        self.users = auth or {}
        kwargs = {}
        if tls_context is not None:
            kwargs["tls_context"] = tls_context
        if auth is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = require_auth
            kwargs["auth_require_tls"] = tls_context is not None
        for attempt in range(3):
            # A port found free can be taken by another test before the sink binds it.
            chosen = free_port(host) if port == 0 else port
            self.controller = Controller(_Handler(self), hostname=host, port=chosen, **kwargs,
                                         ready_timeout=10)
            try:
                self.controller.start()
                break
            except OSError as e:
                if port != 0 or e.errno != errno.EADDRINUSE or attempt == 2:
                    raise
        self.host = host
        self.port = self.controller.server.sockets[0].getsockname()[1]

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            user, pw = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(user) == pw:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def recipients(self) -> list[str]:
        with self.lock:
            return [r for m in self.messages for r in m.recipients]

    def wait_for(self, n_messages: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= n_messages:
                return True
            time.sleep(0.02)
        return len(self.messages) >= n_messages

    def stop(self) -> None:
        if not getattr(self, "_stopped", False):
            self._stopped = True
            self.controller.stop()


def free_port(host: str = "127.0.0.1") -> int:
    import socket
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def sinks_on_one_port(*hosts: str, **kw) -> list[Sink]:
    """Sinks on several loopback addresses sharing one port (MX hosts all use queue.smtp_port)."""
    for _ in range(20):
        first = Sink(hosts[0], 0, **kw)
        out = [first]
        try:
            for h in hosts[1:]:
                out.append(Sink(h, first.port, **kw))
            return out
        except Exception:
            for s in out:
                s.stop()
    raise RuntimeError("could not bind sinks on one shared port")
