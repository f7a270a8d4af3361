"""An IMAP or POP3 connection from accept to close, the same for both protocols.

The listener hands the connection to its protocol's session; `serve` then refuses it (a
banned address, the global limit, too many from one address: engine.connlimits decides)
or counts it in the shared sessions, greets the client, reads and answers one request at
a time until the client leaves, idles too long or the server stops, and closes it. What
differs between IMAP and POP3 comes in: the texts (a `Protocol`) and the session (a
`Connection`), which knows how to greet, read one request and answer it.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from . import connlimits, memtrim, overload
from .access import gate
from .watchdog import Watchdog


@dataclass(frozen=True)
class Protocol:
    """What one protocol says at each turn of a connection's life."""
    name: str                       # "imap" or "pop3": the sessions' protocol and the log's prefix
    refusal: str                    # the line a refused client gets, with {} for the reason
    refusals: dict[str, str]        # connlimits.BANNED, FULL, ADDRESS_FULL -> the reason
    autologout: bytes               # before closing a connection idle for too long
    busy: bytes                     # out of file descriptors (overload.BUSY_*)
    internal_error: bytes           # a bug ended the session
    shutting_down: bytes | None     # the graceful stop's goodbye, if the protocol has one
    hangups: tuple[type[BaseException], ...] = ()   # the protocol's "end this session quietly"


class Connection:
    """One IMAP or POP3 connection: what both protocols' sessions hold, and what `serve`
    asks of them. A session class adds greeting(), send(), read_request() and handle()."""

    def __init__(self, runtime, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls_mode: str):
        self.runtime = runtime
        self.reader = reader
        self.writer = writer
        self.tls_mode = tls_mode                # "implicit", "starttls" or "none"
        self.tls_active = tls_mode == "implicit"
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer_ip = str(peer[0])
        self.account = None                     # the directory's account once logged in
        self.session = None                     # the runtime.Session, set by serve
        self.watchdog: Watchdog | None = None   # the idle and command limits, set by serve
        self.listener_name = ""                 # imap, imaps, pop3 or pop3s: set by listen

    @property
    def plaintext_ok(self) -> bool:
        """A password may be sent: under TLS, or where the settings allow it in clear."""
        return self.tls_active or self.runtime.settings.auth.allow_plaintext

    def greeting(self) -> bytes:
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    async def read_request(self) -> Any:
        """The next request, or None when the client is gone."""
        raise NotImplementedError

    async def handle(self, request) -> bool:
        """Answer one request; False ends the session."""
        raise NotImplementedError

    async def finish(self) -> None:
        """Give back what the session holds (a mailbox lock, a spooled message)."""


# Ends a session without a word: the client left, or the protocol said its last line.
_QUIET = (ConnectionError, asyncio.IncompleteReadError, TimeoutError)


async def serve(conn: Connection, protocol: Protocol) -> None:
    """One connection, from admission to close."""
    rt = conn.runtime
    conn.watchdog = Watchdog()
    try:
        conn.session, refused = await admit(rt, protocol.name, conn.peer_ip,
                                            lambda: shut_down(conn.writer, protocol), conn.listener_name)
        if refused is not None:
            reason = protocol.refusals.get(refused) or gate.TEXTS[protocol.name]
            rt.log.info("%s: %s refused: %s", protocol.name, conn.peer_ip, reason)
            await conn.send(protocol.refusal.format(reason).encode())
            return
        await conn.send(conn.greeting())
        await read_loop(conn, protocol)
    except _QUIET + protocol.hangups:
        pass
    except Exception as e:  # a bug must not take the server down; log it with the traceback
        with contextlib.suppress(Exception):
            if overload.out_of_fds(e):
                await conn.send(protocol.busy)
            else:
                rt.log.exception("%s: session from %s failed", protocol.name, conn.peer_ip)
                if not conn.writer.is_closing():
                    conn.writer.write(protocol.internal_error)
    finally:
        conn.watchdog.close()
        await conn.finish()
        if conn.session is not None:
            conn.session.close()
        close(conn.writer)
        memtrim.release()


async def admit(rt, protocol: str, ip: str, closer, listener: str = ""):
    """(the new session or None, the refusal or None) for a new IMAP or POP3 connection."""
    refused = await rt.run_blocking(connlimits.before_open, rt, ip, listener)
    if refused is not None:
        return None, refused
    session = rt.sessions.open(protocol, ip)
    session.closer = closer
    return session, connlimits.after_open(rt, ip)


def idle_limit(conn: Connection) -> float:
    """Seconds a client may stay silent: shorter before login when the server is near its limits."""
    if conn.account is None:
        return connlimits.login_timeout(conn.runtime, conn.peer_ip)
    return conn.runtime.settings.mailbox.idle_timeout_s


async def read_loop(conn: Connection, protocol: Protocol) -> None:
    """Requests until the client leaves, is idle for too long or the server stops."""
    stopping = conn.runtime.stopping
    watchdog = conn.watchdog
    while not stopping.is_set():
        watchdog.watch(idle_limit(conn))
        try:
            request = await conn.read_request()
        except (asyncio.CancelledError, TimeoutError) as e:    # TimeoutError: a read's own
            if isinstance(e, asyncio.CancelledError) and not watchdog.expired():
                raise
            await conn.send(protocol.autologout)
            return
        watchdog.stop()
        if request is None:
            return
        go_on = await conn.handle(request)
        memtrim.release()
        if not go_on:
            return


def shut_down(writer: asyncio.StreamWriter, protocol: Protocol) -> None:
    """Graceful stop: say goodbye where the protocol has one (RFC 3501 §7.1.5), then close."""
    if protocol.shutting_down is not None:
        with contextlib.suppress(Exception):
            if not writer.is_closing():
                writer.write(protocol.shutting_down)
    close(writer)


def close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


def stream_factory(client, limit: int):
    """A protocol factory for runtime.listen that hands each connection to `client`
    as a (StreamReader, StreamWriter) pair, as asyncio.start_server does."""
    def factory():
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client, loop=loop)
    return factory


async def listen(runtime, name: str, listener_settings, session_class, protocol: Protocol,
                 line_limit: int) -> list[asyncio.base_events.Server]:
    """Listen on every bind address of one listener (implicit TLS when its settings say so);
    each connection is served by a new session_class(runtime, name, reader, writer, tls_mode)."""
    tls_mode = listener_settings.tls
    ssl_ctx = runtime.ssl_context() if tls_mode == "implicit" else None

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = session_class(runtime, name, reader, writer, tls_mode)
        session.listener_name = name            # the access lists' listener (engine/access/gate.py)
        await session.run()

    return await runtime.listen(name, stream_factory(client, line_limit), listener_settings, ssl=ssl_ctx,
                                busy_reply=protocol.busy)
