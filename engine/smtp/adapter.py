"""What adapts aiosmtpd to us: the base class of our SMTP session (server.py).

aiosmtpd runs the dialogue's machinery (reading commands, parsing MAIL and RCPT, the
AUTH exchange, STARTTLS). This class makes it cheaper per connection and per command,
and shapes what it sends:

- a reader that does not pause the socket for every message of a few KB, and an
  __init__ that skips aiosmtpd's method discovery, for the version it was written for;
- one idle timer per session instead of one per command;
- every reply rewritten to carry an enhanced status code and our wording (replies.py);
  replies to pipelined commands held for one write (RFC 2920); a client that keeps
  sending invalid commands closed;
- aiosmtpd's handler hooks (handle_MAIL, ...) forwarded to methods of the session.

Every override of an aiosmtpd internal (an underscored name) is here, with why. The
session implements the hooks declared at the end of SMTPAdapter.
"""
from __future__ import annotations

import asyncio
import collections
import re

import aiosmtpd
from aiosmtpd.smtp import SMTP, _AuthMechAttr, login_always_fail

from .. import memtrim
from ..replybatch import drain_held
from . import replies

FAST_INIT = aiosmtpd.__version__ == "1.4.6"
_HOOK_NAMES = ("handle_MAIL", "handle_RCPT", "handle_QUIT", "handle_exception")
RECV_SIZE = 64 * 1024

_ENHANCED_OLD = tuple(old for old, _ in replies.AIOSMTPD if old[4:5].isdigit())
_REWRITTEN: dict[str, str] = {}
_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
_SIMPLE_ADDR = re.compile(r"^\s*<([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+)>(.*)$", re.S)
# MAIL FROM's SIZE= (RFC 1870) that aiosmtpd's int() would choke on: not 1-20 ASCII digits.
_BAD_SIZE = re.compile(r"(?i)(?:^|\s)SIZE=(?![0-9]{1,20}(?:\s|$))")
_SHUTTING_DOWN = f"{replies.SHUTTING_DOWN}\r\n".encode()
_TOO_MANY_INVALID = f"{replies.TOO_MANY_INVALID}\r\n".encode()


class _Reader(asyncio.StreamReader):
    """The command reader, whose limit is the longest command line. asyncio pauses a
    socket once twice that limit is buffered, so every message of a few KB paused and
    resumed it (two epoll_ctl calls, a tenth of the event loop's time); this one pauses
    only past PAUSE_AT bytes, which still bounds what a client can make us buffer."""

    PAUSE_AT = 256 * 1024

    def feed_data(self, data) -> None:
        # StreamReader.feed_data (3.11-3.13) with PAUSE_AT for its 2 x limit
        if not data:
            return
        self._buffer.extend(data)
        self._wakeup_waiter()
        if self._transport is not None and not self._paused and len(self._buffer) > self.PAUSE_AT:
            try:
                self._transport.pause_reading()
            except NotImplementedError:
                self._transport = None
            else:
                self._paused = True

    def _maybe_resume_transport(self) -> None:
        if self._paused and len(self._buffer) <= self.PAUSE_AT // 2:
            self._paused = False
            self._transport.resume_reading()


class AuthLineTooLong(Exception):
    """An AUTH response line over the command line limit (answered 500 5.5.6)."""


class _Hooks:
    """aiosmtpd calls handle_* on a handler object; ours forwards to the session."""

    def __init__(self):
        self.proto: SMTPAdapter | None = None

    async def handle_MAIL(self, server, session, envelope, address, options):
        return await self.proto.on_mail(address, options)

    async def handle_RCPT(self, server, session, envelope, address, options):
        return await self.proto.on_rcpt(address, options)

    async def handle_QUIT(self, server, session, envelope):
        return self.proto.on_quit()

    async def handle_exception(self, error):
        return self.proto.on_exception(error)


class _Commands:
    """aiosmtpd's table of command methods (command -> bound smtp_* method), bound only
    for the commands a client sends rather than for all of them at every connection."""

    __slots__ = ("proto", "names")

    def __init__(self, proto, names: dict[str, str]):
        self.proto = proto
        self.names = names

    def get(self, command: str, default=None):
        name = self.names.get(command)
        return default if name is None else getattr(self.proto, name)

    def __getitem__(self, command: str):
        return getattr(self.proto, self.names[command])

    def __contains__(self, command) -> bool:
        return command in self.names

    def __iter__(self):
        return iter(self.names)

    def items(self):
        return [(command, getattr(self.proto, name)) for command, name in self.names.items()]


class _Mechanisms(_Commands):
    """aiosmtpd's table of AUTH mechanisms (name -> its method, marked builtin), likewise
    bound only when a client names one."""

    __slots__ = ()

    def get(self, mechanism: str, default=None):
        return self[mechanism] if mechanism in self.names else default

    def __getitem__(self, mechanism: str):
        return _AuthMechAttr(getattr(self.proto, self.names[mechanism]), True)

    def keys(self):
        return self.names.keys()

    def items(self):
        return [(m, self[m]) for m in self.names]


def _mechanisms(cls) -> dict[str, str]:
    """AUTH mechanism -> the auth_* method of cls that implements it (auth_CRAM__MD5:
    CRAM-MD5). Only methods: auth_require_tls, a property, is no mechanism."""
    return {n[5:].replace("__", "-"): n for n in dir(cls)
            if n.startswith("auth_") and callable(getattr(cls, n, None))}


class SMTPAdapter(SMTP):
    """aiosmtpd's SMTP protocol, adapted; one instance per connection."""

    _smtp_names: dict | None = None        # command -> smtp_* method name, per class
    _auth_names: dict | None = None        # AUTH mechanism -> auth_* method name, per class

    def __init__(self, *, command_line_limit: int, **options):
        # aiosmtpd keeps these at class level; per instance they cannot leak between sessions
        self.command_size_limit = command_line_limit
        self.command_size_limits = collections.defaultdict(lambda: command_line_limit + 50)
        self.line_length_limit = max(1001, command_line_limit + 2)
        self.hooks = _Hooks()
        if FAST_INIT:
            self._fast_init(**options)
        else:
            super().__init__(self.hooks, **options)
            for name in [m for m, attr in self._auth_methods.items() if not callable(attr.method)]:
                del self._auth_methods[name]       # a property named auth_*, no mechanism
        self.hooks.proto = self
        self.peer_ip = ""
        self.invalid = 0                       # replies counted toward max_invalid_commands
        self.held: list[bytes] = []       # replies waiting for the next write (pipelining)
        self.closing = False
        self._idle_checked = float("-inf")

    def _fast_init(self, *, data_size_limit, enable_SMTPUTF8, decode_data, hostname, ident, tls_context,
                   timeout, auth_require_tls, loop) -> None:
        """What aiosmtpd 1.4.6's SMTP.__init__ does for our options, without rebuilding its
        method tables with inspect.getmembers() on every connection (a tenth of our CPU
        per message). Used only with the version it was written against."""
        self.__ident__ = ident
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(
            self, _Reader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected, loop=loop)
        self.event_handler = self.hooks
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.hostname = hostname
        self.tls_context = tls_context
        self.require_starttls = False
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._deadline = 0.0
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = auth_require_tls
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = login_always_fail
        self._auth_required = False
        cls = type(self)
        if "_smtp_names" not in cls.__dict__:        # per class: a subclass has its own methods
            cls._smtp_names = {n[5:]: n for n in dir(cls) if n.startswith("smtp_")}
            cls._auth_names = _mechanisms(cls)
        # the session's auth_* methods override aiosmtpd's builtin ones: builtin, as there
        self._auth_methods = _Mechanisms(self, cls._auth_names)
        self._handle_hooks = {name[7:]: getattr(self.hooks, name) for name in _HOOK_NAMES}
        self._ehlo_hook_ver = None
        self._smtp_methods = _Commands(self, cls._smtp_names)
        self._enforce_call_limit = False

    # -- the connection -------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        first = self.transport is None            # aiosmtpd calls it again after STARTTLS
        if hasattr(transport, "max_size"):
            # asyncio reads into a fresh max_size buffer per recv(); its 256 KiB default is
            # mmap'd and unmapped each time (three system calls per read of a command line)
            transport.max_size = RECV_SIZE
        super().connection_made(transport)
        if first:
            peer = transport.get_extra_info("peername") or ("", 0)
            self.peer_ip = peer[0][7:] if peer[0].startswith("::ffff:") else peer[0]
            self.on_connect()

    def eof_received(self):
        self.on_hangup()
        return super().eof_received()

    def connection_lost(self, error) -> None:
        self.on_hangup()
        self.on_disconnect()
        super().connection_lost(error)
        memtrim.release()

    async def _handle_client(self) -> None:
        # aiosmtpd's per-connection coroutine: our admission comes before its greeting
        if not await self.admit():
            return
        self._idle_checked = float("-inf")      # counted now: the stress as it is with us
        self._reset_timeout()                   # for the wait for the first command
        await super()._handle_client()

    @property
    def reader(self) -> asyncio.StreamReader:
        """What the client sent and nobody read yet."""
        return self._reader

    @property
    def tls_active(self) -> bool:
        return self._tls_protocol is not None      # aiosmtpd's record of a STARTTLS done

    @property
    def auth_require_tls(self) -> bool:
        return self._auth_require_tls

    def tls_info(self) -> tuple[str, str]:
        """The TLS version and cipher of the connection, or ('', '')."""
        ssl_obj = self.transport.get_extra_info("ssl_object") if self.transport else None
        if ssl_obj is None:
            return "", ""
        cipher = ssl_obj.cipher() or ("", "", 0)
        return ssl_obj.version() or "", cipher[0]

    def new_envelope(self) -> None:
        """A new transaction (EHLO, HELO, RSET): aiosmtpd's own reset of the envelope."""
        self._set_rset_state()

    # -- the single timer -----------------------------------------------------------------
    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd cancels and re-creates a timer for every command; this keeps one timer
        per session and only moves the deadline (the timer re-arms itself when it fires
        early), so a command costs no timer-heap work."""
        loop = self.loop
        deadline = loop.time() + (duration or self._idle_limit())
        self._deadline = deadline
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = loop.call_at(deadline, self._timeout_due)

    def _idle_limit(self) -> float:
        """The idle time allowed now (shorter under stress), looked up at most once a second."""
        now = self.loop.time()
        if now - self._idle_checked > 1.0:
            self._idle_checked = now
            self._timeout_duration = self.idle_allowed()
        return self._timeout_duration

    def _timeout_due(self) -> None:
        if self.loop.time() < self._deadline:
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_due)
            return
        self._timeout_cb()

    def _timeout_cb(self):
        # aiosmtpd's timer callback; RFC 5321 §4.5.3.2: tell the client before closing
        if self.transport is not None and not self.transport.is_closing():
            self.on_timeout()
            self._write_now(f"{replies.timeout(self.hostname)}\r\n".encode())
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: an idle session is told and closed; a busy one closes after its reply."""
        if self.is_busy():
            self.closing = True
            return
        if self.transport is not None and not self.transport.is_closing():
            self._write_now(_SHUTTING_DOWN)
            self.transport.close()

    # -- replies ----------------------------------------------------------------------------
    async def push(self, status, raw: bool = False) -> None:
        if isinstance(status, bytes):
            status = status.decode("utf-8", "replace")
        if not raw:
            status = self._rewrite(status)
        data = status.encode("utf-8", "surrogateescape") + b"\r\n"
        if self._may_hold(status):
            self.held.append(data)
        else:
            await self._send(data)
        code = status[:3]
        if code in replies.INVALID_CODES or status.startswith(replies.UNKNOWN_MAILBOX):
            self.invalid += 1
            if self.invalid >= self.max_invalid_commands() and not self.closing:
                self.closing = True
                await self._send(_TOO_MANY_INVALID)
                self.transport.close()
        elif code == "421" and self.transport is not None:
            self.transport.close()

    def _may_hold(self, status: str) -> bool:
        """RFC 2920: replies to pipelined commands may wait, so that a client's MAIL, RCPT
        and DATA get their replies in one write. A reply waits only while the next command
        is already here to be read (so no reply waits on the network), and never one
        after which the client must act: the greeting, 354, 334, TLS, 421, 221."""
        return (status[:1] in ("2", "5") and not status.startswith(("220", "221", "354"))
                and b"\n" in self._reader._buffer)

    async def _send(self, data: bytes) -> None:
        self._writer.write(drain_held(self.held, data))
        await self._writer.drain()

    def _write_now(self, data: bytes) -> None:
        """Out of turn (timeout, shutdown): held replies first, in order."""
        self.transport.write(drain_held(self.held, data))

    @staticmethod
    def _rewrite(status: str) -> str:
        # Our own replies already carry an enhanced code: skip the table walk (most pushes).
        if status[4:5].isdigit() and not status.startswith(_ENHANCED_OLD) and _HAS_ENHANCED.match(status):
            return status
        cached = _REWRITTEN.get(status)
        if cached is None:
            cached = SMTPAdapter._rewrite_table(status)
            if len(_REWRITTEN) < 512:          # aiosmtpd's fixed texts; never unbounded
                _REWRITTEN[status] = cached
        return cached

    @staticmethod
    def _rewrite_table(status: str) -> str:
        for old, new in replies.AIOSMTPD:
            if status.startswith(old):
                return new
        if status[:3] in ("220", "334", "354") or _HAS_ENHANCED.match(status) or len(status) < 4:
            return status
        code = status[:3]
        text = status[4:]
        for prefix in ("Error: ", "Syntax: "):
            if text.startswith(prefix) and prefix == "Syntax: ":
                break
            if text.startswith(prefix):
                text = text[len(prefix):]
        cls = code[0]
        enhanced = {"2": "2.0.0", "4": "4.0.0", "5": "5.5.4" if code in ("501", "555") else "5.5.0"}.get(cls)
        return f"{code}{status[3]}{enhanced} {text}" if enhanced else status

    # -- aiosmtpd's parsing -------------------------------------------------------------
    def _getaddr(self, arg: str):
        """The common '<local@domain> params' by regex; anything unusual (quotes, source
        routes, '<>', comments) goes to aiosmtpd's full RFC 5322 parser."""
        m = _SIMPLE_ADDR.match(arg or "")
        if m:
            return m.group(1), m.group(2)
        return super()._getaddr(arg)

    async def smtp_MAIL(self, arg: str) -> None:
        if arg and _BAD_SIZE.search(arg):       # aiosmtpd's int() would raise on it
            await self.push(replies.MAIL_SYNTAX)
            return
        await super().smtp_MAIL(arg)

    async def read_auth_line(self) -> bytes:
        """A client's line during AUTH (aiosmtpd's challenge_auth has no limit);
        AuthLineTooLong (after reading it to its end, so the session stays in step) when
        over the command line limit."""
        too_long = False
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as e:
                await self._reader.readexactly(e.consumed)
                too_long = True
                continue
            except asyncio.IncompleteReadError:
                raise ConnectionResetError("connection closed during AUTH") from None
            if too_long or len(line) > self.line_length_limit:
                raise AuthLineTooLong()
            return line

    # -- hooks: what the session decides ------------------------------------------------
    def on_connect(self) -> None:
        """A new connection; peer_ip is known."""

    def on_hangup(self) -> None:
        """The client closed its side, or the connection is lost (both may come)."""

    def on_disconnect(self) -> None:
        """The connection is gone: end what it had open."""

    async def admit(self) -> bool:
        """Before the greeting: False when the connection was refused (and closed)."""
        return True

    def idle_allowed(self) -> float:
        """Seconds a client may stay silent between commands."""
        return self._timeout_duration

    def on_timeout(self) -> None:
        """The client stayed silent too long; it is told and closed after this."""

    def is_busy(self) -> bool:
        """Whether a stop must wait for the reply in progress (the end of DATA)."""
        return False

    def max_invalid_commands(self) -> int:
        """Invalid commands after which the client is closed."""
        raise NotImplementedError

    async def on_mail(self, address: str, options: list[str]) -> str:
        """MAIL FROM parsed by aiosmtpd: the reply."""
        raise NotImplementedError

    async def on_rcpt(self, address: str, options: list[str]) -> str:
        """RCPT TO parsed by aiosmtpd: the reply."""
        raise NotImplementedError

    def on_quit(self) -> str:
        return replies.BYE

    def on_exception(self, error: BaseException) -> str:
        """An error escaped a command: the reply (a 421 closes the connection)."""
        return replies.LOCAL_ERROR_CLOSING
