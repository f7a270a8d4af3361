"""The inbound SMTP server (ports 25, 587, 465) on aiosmtpd, with what aiosmtpd lacks:

- PIPELINING, ENHANCEDSTATUSCODES, SMTPUTF8, 8BITMIME and SIZE advertised; AUTH offered
  on implicit TLS (aiosmtpd issue #281) and never on port 25;
- DATA streamed in chunks, bare CR / bare LF rejected after reading to the real end;
- enhanced status codes on every reply, reference reply texts (feature-inventory §1.8);
- limits: connections (total, per IP), messages per IP per minute, invalid commands,
  command line length, command timeout (421 4.4.2), total DATA time, size, recipients;
- AUTH PLAIN/LOGIN against the directory with failure delay and auto-ban;
- relay policy on the resolved address (policy.py);
- RCPT and after DATA, the acceptance pipeline (engine/accept): every copy durable before
  250 (engine.delivery), or 451 4.3.0 and none visible;
  a full or read-only disk gets 452 4.3.1, at MAIL FROM already below the free-space reserve.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import ipaddress
import re
import time

import aiosmtpd
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, TLSSetupException, _AuthMechAttr, login_always_fail

from .. import accept, diskspace, memtrim, overload, queue as queue_mod, storage_errors
from ..heldoutput import with_held
from ..largemsg import close_quietly
from ..settings import message_size_limit
from . import admission, policy
from .data import DataResult, read_data

_FAST_INIT = aiosmtpd.__version__ == "1.4.6"
_HOOK_NAMES = ("handle_MAIL", "handle_RCPT", "handle_QUIT", "handle_exception")
IDENT = "ESMTP mailctl"
RECV_SIZE = 64 * 1024

# aiosmtpd's own replies, given enhanced status codes and the reference wording
_REWRITE = [
    ("503 Error: send HELO first", "503 5.5.1 Use HELO/EHLO First"),
    ("503 Error: send EHLO first", "503 5.5.1 Use HELO/EHLO First"),
    ("503 Error: need MAIL command", "503 5.5.1 Must Have Sender First"),
    ("503 Error: need RCPT command", "503 5.5.1 Must Have Sender And Recipient First"),
    ("503 Error: nested MAIL command", "503 5.5.1 Issue A Reset If You Want To Start Over"),
    ("503 Already authenticated", "503 5.5.1 Already Authenticated"),
    ("500 Command line too long", "500 5.5.2 Line Too Long"),
    ("500 Error: command ", "502 5.5.2 Unimplemented Command"),
    ("500 Error: bad syntax", "500 5.5.2 Syntax Error"),
    ("500 Error: strict ASCII mode", "500 5.5.2 Syntax Error: non-ASCII command"),
    ("552 Error: message size exceeds", "552 5.3.4 Message Size Exceeds Fixed Maximum Message Size"),
    ("553 5.1.3 Error: malformed address", "501 5.1.3 A Valid Address Is Required"),
    ("504 5.5.4 Unrecognized authentication type", "504 5.5.4 Authentication Method Not Supported"),
    ("501 Not enough value", "504 5.5.4 Authentication Type Not Supported"),
    ("250 OK", "250 2.0.0 Ok"),
    ("221 Bye", "221 2.0.0 Bye"),
    ("220 Ready to start TLS", "220 2.0.0 Ready to start TLS"),
    ("454 TLS not available", "454 4.7.0 TLS not available"),
    ("502 5.5.1 Too many unrecognized commands", "421 4.7.0 Too Many Invalid Commands, Closing Connection"),
]
_ENHANCED_OLD = tuple(old for old, _ in _REWRITE if old[4:5].isdigit())
_REWRITTEN: dict[str, str] = {}
_SIMPLE_ADDR = re.compile(r"^\s*<([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+)>(.*)$", re.S)
_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
_HELO_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,253})$")
# MAIL FROM's SIZE= (RFC 1870) that aiosmtpd's int() would choke on: not 1-20 ASCII digits.
_BAD_SIZE = re.compile(r"(?i)(?:^|\s)SIZE=(?![0-9]{1,20}(?:\s|$))")
AUTH_LINE_TOO_LONG = "500 5.5.6 Authentication Exchange line is too long"


class _Reader(asyncio.StreamReader):
    """The command reader, whose limit is the longest command line. asyncio pauses a
    socket once twice that limit is buffered, so every message of a few KB paused and
    resumed it (two epoll_ctl calls, a tenth of the event loop's time); this one pauses
    only past PAUSE_AT bytes, which still bounds what a client can make us buffer."""

    PAUSE_AT = 256 * 1024

    def feed_data(self, data) -> None:
        limit = self._limit
        self._limit = self.PAUSE_AT // 2          # feed_data pauses past 2 x _limit
        try:
            super().feed_data(data)
        finally:
            self._limit = limit

    def _maybe_resume_transport(self) -> None:
        if self._paused and len(self._buffer) <= self.PAUSE_AT // 2:
            self._paused = False
            self._transport.resume_reading()


class _LineTooLong(Exception):
    """An AUTH response line over the limit (answered 500 5.5.6)."""


class _Hooks:
    """aiosmtpd calls handle_* on a handler object; ours forwards to the protocol."""

    def __init__(self):
        self.proto: "MailSMTP | None" = None

    async def handle_MAIL(self, server, session, envelope, address, options):
        return await self.proto.on_mail(address, options)

    async def handle_RCPT(self, server, session, envelope, address, options):
        return await self.proto.on_rcpt(address, options)

    async def handle_QUIT(self, server, session, envelope):
        self.proto.end_transaction("quit")
        return "221 2.0.0 Bye"

    async def handle_exception(self, error):
        if isinstance(error, TLSSetupException):
            # A client that sent plaintext (or gave up) after STARTTLS: its error, not ours.
            self.proto.runtime.log.info("smtp: %s: TLS handshake failed: %s", self.proto.peer_ip,
                                        error.__cause__ or error)
            return "421 4.7.0 TLS handshake failed"
        if storage_errors.is_storage_fault(error):
            # a write of some session state met a full or read-only disk: temporary, no bug
            self.proto.runtime.log.warning("smtp: %s: %s", self.proto.peer_ip, error)
            return diskspace.INSUFFICIENT
        self.proto.runtime.log.exception("smtp: %s: internal error", self.proto.peer_ip)
        return "421 4.3.0 Local Error In Processing, Closing Connection"


class MailSMTP(SMTP):
    def __init__(self, runtime, name: str, listener):
        self.runtime = runtime
        self.listener_name = name
        self.listener = listener
        settings = runtime.settings
        limits = settings.limits
        # aiosmtpd keeps these at class level; per instance they cannot leak between sessions
        self.command_size_limit = limits.max_command_line
        self.command_size_limits = collections.defaultdict(lambda: limits.max_command_line + 50)
        self.line_length_limit = max(1001, limits.max_command_line + 2)
        implicit = listener.tls == "implicit"
        tls_ctx = runtime.ssl_context() if listener.tls == "starttls" else None
        self.hooks = _Hooks()
        options = dict(data_size_limit=message_size_limit(settings), enable_SMTPUTF8=True, decode_data=False,
                       hostname=settings.server.hostname, ident=IDENT, tls_context=tls_ctx,
                       timeout=limits.command_timeout_s,
                       auth_require_tls=not (implicit or settings.auth.allow_plaintext),
                       loop=asyncio.get_running_loop())
        if _FAST_INIT:
            self._fast_init(**options)
        else:
            super().__init__(self.hooks, **options)
        self.hooks.proto = self
        self.implicit_tls = implicit
        self.peer_ip = ""
        self.client = policy.Client("", name)
        self.sess = None
        self.invalid = 0
        self.held: list[bytes] = []       # replies waiting for the next write (pipelining)
        self.closing = False
        self.accepted: list[policy.Accepted] = []
        self.rejected: list[str] = []
        self.txn_started = False
        self._idle_checked = float("-inf")
        self.greeted = False                   # past the pregreet wait

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
        self._auth_methods = {"PLAIN": _AuthMechAttr(self.auth_PLAIN, True),
                              "LOGIN": _AuthMechAttr(self.auth_LOGIN, True)}
        self._handle_hooks = {name[7:]: getattr(self.hooks, name) for name in _HOOK_NAMES}
        self._ehlo_hook_ver = None
        cls = type(self)
        if cls._smtp_names is None:
            cls._smtp_names = tuple(n for n in dir(cls) if n.startswith("smtp_"))
        self._smtp_methods = {n[5:]: getattr(self, n) for n in cls._smtp_names}
        self._enforce_call_limit = False

    _smtp_names: tuple | None = None

    # -- connection -----------------------------------------------------------------
    def connection_made(self, transport) -> None:
        first = self.transport is None
        if hasattr(transport, "max_size"):
            # asyncio reads into a fresh max_size buffer per recv(); its 256 KiB default is
            # mmap'd and unmapped each time (three system calls per read of a command line)
            transport.max_size = RECV_SIZE
        super().connection_made(transport)
        if first:
            peer = transport.get_extra_info("peername") or ("", 0)
            self.peer_ip = peer[0]
            if self.peer_ip.startswith("::ffff:"):
                self.peer_ip = self.peer_ip[7:]
            self.client.ip = self.peer_ip
            self.client.trusted = policy.in_networks(self.peer_ip, self.runtime.settings.relay.trusted_networks)
            self.sess = self.runtime.sessions.open(self.listener_name, self.peer_ip)
            self.sess.closer = self.shutdown

    def _hung_up(self) -> None:
        """A client that talked and hung up during the pregreet wait (which aiosmtpd then
        cancels) is counted all the same."""
        if not self.greeted and self.sess is not None and admission.talked(self._reader):
            self.greeted = True
            admission.count_pregreet_soon(self.runtime, self.peer_ip)

    def eof_received(self):
        self._hung_up()
        return super().eof_received()

    def connection_lost(self, error) -> None:
        self._hung_up()
        if self.sess is not None:
            self.end_transaction("disconnected")
            self.sess.close()
            self.sess = None
        super().connection_lost(error)
        memtrim.release()

    async def _handle_client(self) -> None:
        rt = self.runtime
        reason = admission.refusal(rt, self.peer_ip)
        if reason:
            rt.log.info("smtp: %s refused: %s", self.peer_ip, reason)
            await self.push(reason)
            self.transport.close()
            return
        pregreet = await admission.talks_first(rt, self.listener_name, self._reader)
        self.greeted = True
        if pregreet:
            await admission.count_pregreet(rt, self.peer_ip)     # before the reply: its next try sees a ban
            await self._send(f"{admission.PREGREET}\r\n".encode())
            self.transport.close()
            return
        self._idle_checked = float("-inf")      # counted now: the stress as it is with us
        self._reset_timeout()                   # for the wait for the first command
        await super()._handle_client()

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
            self._timeout_duration = admission.idle_limit(self.runtime, self.peer_ip)
        return self._timeout_duration

    def _timeout_due(self) -> None:
        if self.loop.time() < self._deadline:
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_due)
            return
        self._timeout_cb()

    def _timeout_cb(self):
        # RFC 5321 §4.5.3.2: tell the client before closing
        if self.transport is not None and not self.transport.is_closing():
            self.runtime.log.info("smtp: %s timed out", self.peer_ip)
            self._write_now(f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n".encode())
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: an idle session is told and closed; a busy one closes after its reply."""
        if self.sess is not None and self.sess.busy:
            self.closing = True
            return
        if self.transport is not None and not self.transport.is_closing():
            self._write_now(b"421 4.3.2 Service shutting down, try again later\r\n")
            self.transport.close()

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
        if code in ("500", "501", "502", "503", "504") or status.startswith("550 5.1.1"):
            self.invalid += 1
            if self.invalid >= self.runtime.settings.limits.max_invalid_commands and not self.closing:
                self.closing = True
                await self._send(b"421 4.7.0 Too Many Invalid Commands, Closing Connection\r\n")
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
        self._writer.write(with_held(self.held, data))
        await self._writer.drain()

    def _write_now(self, data: bytes) -> None:
        """Out of turn (timeout, shutdown): held replies first, in order."""
        self.transport.write(with_held(self.held, data))

    @staticmethod
    def _rewrite(status: str) -> str:
        # Our own replies already carry an enhanced code: skip the table walk (most pushes).
        if status[4:5].isdigit() and not status.startswith(_ENHANCED_OLD) and _HAS_ENHANCED.match(status):
            return status
        cached = _REWRITTEN.get(status)
        if cached is None:
            cached = MailSMTP._rewrite_table(status)
            if len(_REWRITTEN) < 512:          # aiosmtpd's fixed texts; never unbounded
                _REWRITTEN[status] = cached
        return cached

    @staticmethod
    def _rewrite_table(status: str) -> str:
        for old, new in _REWRITE:
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

    def _getaddr(self, arg: str):
        """The common '<local@domain> params' by regex; anything unusual (quotes, source
        routes, '<>', comments) goes to aiosmtpd's full RFC 5322 parser."""
        m = _SIMPLE_ADDR.match(arg or "")
        if m:
            return m.group(1), m.group(2)
        return super()._getaddr(arg)

    # -- TLS info --
    def tls_info(self) -> tuple[str, str]:
        ssl_obj = self.transport.get_extra_info("ssl_object") if self.transport else None
        if ssl_obj is None:
            return "", ""
        cipher = ssl_obj.cipher() or ("", "", 0)
        return ssl_obj.version() or "", cipher[0]

    # -- EHLO / HELO ------------------------------------------------------------------
    async def smtp_EHLO(self, hostname: str):
        if not _helo_ok(hostname):
            await self.push("501 5.5.4 EHLO Invalid Domain Address")
            return
        self.end_transaction("reset")
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        lines = [self.hostname, "PIPELINING"]
        if self.data_size_limit:
            lines.append(f"SIZE {self.data_size_limit}")
        lines += ["8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]
        tls_active = self.implicit_tls or self._tls_protocol is not None
        if self.tls_context and not tls_active:
            lines.append("STARTTLS")
        if self.client.submission and (tls_active or not self._auth_require_tls):
            lines.append("AUTH PLAIN LOGIN")
        # one write for the whole reply, not one per line
        await self.push("\r\n".join(f"250-{line}" for line in lines[:-1]) + f"\r\n250 {lines[-1]}", raw=True)

    async def smtp_HELO(self, hostname: str):
        if not _helo_ok(hostname):
            await self.push("501 5.5.4 HELO Invalid Domain Address")
            return
        self.end_transaction("reset")
        self._set_rset_state()
        self.session.extended_smtp = False
        self.session.host_name = hostname
        await self.push(f"250 {self.hostname}", raw=True)

    async def smtp_RSET(self, arg: str):
        if arg:
            await self.push("501 5.5.4 Syntax: RSET")
            return
        self.end_transaction("reset")
        self._set_rset_state()
        await self.push("250 2.0.0 Ok")

    async def smtp_VRFY(self, arg: str):
        await self.push("502 5.5.1 VRFY Disallowed")

    async def smtp_EXPN(self, arg: str):
        await self.push("502 5.5.1 EXPN Disallowed")

    async def smtp_TURN(self, arg: str):
        await self.push("502 5.5.1 Turn Disallowed")

    # -- AUTH -------------------------------------------------------------------------
    async def smtp_AUTH(self, arg: str) -> None:
        if not self.client.submission:
            await self.push("502 5.5.1 AUTH not offered on this port; use submission (587 or 465)")
            return
        if self.envelope.mail_from:
            await self.push("503 5.5.1 AUTH not allowed during a mail transaction")
            return
        try:
            await super().smtp_AUTH(arg)
        except _LineTooLong:
            await self.push(AUTH_LINE_TOO_LONG)

    async def auth_PLAIN(self, _, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self._challenge("")
        else:
            blob = self._b64(args[1])
        if blob is None:
            await self.push("501 5.5.2 Cannot decode response")
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Cannot decode response")
            return AuthResult(success=False, handled=True)
        return await self._login(parts[1], parts[2])

    async def auth_LOGIN(self, _, args: list[str]) -> AuthResult:
        user = self._b64(args[1]) if len(args) > 1 else await self._challenge("Username:")
        password = await self._challenge("Password:") if user is not None else None
        if user is None or password is None:
            await self.push("501 5.5.2 Cannot decode response")
            return AuthResult(success=False, handled=True)
        return await self._login(user, password)

    async def _challenge(self, prompt: str) -> bytes | None:
        await self.push("334 " + base64.b64encode(prompt.encode()).decode(), raw=True)
        line = (await self._auth_line()).strip()
        if line == b"*":
            return None
        return self._b64(line)

    async def _auth_line(self) -> bytes:
        """A client's line during AUTH; _LineTooLong (after reading it to its end, so
        the session stays in step) when over the command line limit."""
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
                raise _LineTooLong()
            return line

    @staticmethod
    def _b64(text) -> bytes | None:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None

    async def _login(self, user_b: bytes, password_b: bytes) -> AuthResult:
        user = user_b.decode("utf-8", "replace").strip()
        password = password_b.decode("utf-8", "replace")
        account = await self.runtime.authenticate(user, password, self.peer_ip, self.listener_name)
        if account is None:
            if self.runtime.bans.is_banned(self.peer_ip):
                await self.push("421 4.7.0 Too many failed logins from your address, try again later")
            else:
                await self.push("535 5.7.8 Authentication Failed. Restarting Authentication Process.")
            return AuthResult(success=False, handled=True)
        self.client.user = account.address
        if self.sess is not None:
            self.sess.user = account.address
        self.runtime.log.info("smtp: %s authenticated as %s on %s", self.peer_ip, account.address,
                              self.listener_name)
        return AuthResult(success=True, auth_data=LoginPassword(account.address.encode(), b""),
                          message="235 2.7.0 Authentication Successful")

    # -- the transaction -----------------------------------------------------------------
    async def on_mail(self, address: str, options: list[str]) -> str:
        rt, settings = self.runtime, self.runtime.settings
        sender = policy.normalize_sender(address)
        if sender is None:
            return str(policy.SENDER_INVALID)
        rejection = policy.check_sender(settings, rt.directory, self.client, sender)
        if rejection:
            return str(rejection)
        per_minute = settings.limits.messages_per_ip_per_minute
        shared = rt.sessions.shared       # counted across every serving process
        if per_minute and shared is not None and not shared.allow(f"messages {self.peer_ip}", per_minute):
            return "450 4.7.1 Too Many Messages From Your Address, Try Again Later"
        if not await self.room_for(_size_option(options)):
            return diskspace.INSUFFICIENT
        self.envelope.mail_from = sender if sender else "<>"
        self.envelope.mail_options.extend(options)
        self.accepted, self.rejected, self.txn_started = [], [], True
        return "250 2.1.0 Ok"

    async def room_for(self, size: int) -> bool:
        """Is there room for a message of `size` bytes above the free-space reserve?"""
        rt = self.runtime
        space = diskspace.cached(rt.root.path) or await rt.run_blocking(diskspace.measure, rt.root.path)
        if space.room_for(size, diskspace.reserve_bytes(rt.settings)):
            return True
        rt.log.info("smtp: %s: MAIL FROM refused: %s", self.peer_ip,
                    "the mail root is read-only" if space.read_only else
                    f"{space.free} bytes free, SIZE={size}, below the reserve (limits.min_free_space_mb)")
        return False

    async def smtp_MAIL(self, arg: str) -> None:
        if arg and _BAD_SIZE.search(arg):
            await self.push("501 5.5.4 Syntax: MAIL FROM: <address> [SIZE=<ASCII digits>]")
            return
        await super().smtp_MAIL(arg)

    def declared_size(self) -> int:
        return _size_option(self.envelope.mail_options)

    async def on_rcpt(self, address: str, options: list[str]) -> str:
        rt = self.runtime
        sender = "" if self.envelope.mail_from == "<>" else self.envelope.mail_from
        check = accept.RcptCheck(rt, self.client, sender, address, self.declared_size(), len(self.accepted))
        verdict = await rt.pipeline.check_recipient(check)      # engine/accept/pipeline.py
        if verdict is not accept.CONTINUE:
            if verdict.tag:
                self.rejected.append(verdict.tag)
            return verdict.reply
        result = check.result
        if result.address not in self.envelope.rcpt_tos:
            self.envelope.rcpt_tos.append(result.address)
            self.accepted.append(result)
        return "250 2.1.5 Ok"

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if not self.envelope.mail_from:
            await self.push("503 5.5.1 Must Have Sender First")
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Must Have Sender And Recipient First")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        settings = self.runtime.settings
        limit = self.data_size_limit or 0
        domain_limits = [a.max_size for a in self.accepted if a.max_size]
        if domain_limits:
            limit = min([limit] + domain_limits) if limit else min(domain_limits)
        if self.sess is not None:
            self.sess.busy = True
        try:
            await self.push("354 End data with <CR><LF>.<CR><LF>", raw=True)
            envelope = self.arrival_envelope()
            arrived = time.time()
            self._reset_timeout(settings.limits.data_timeout_s)
            result = await read_data(self._reader, limit, spill_dir=self.runtime.root.run_dir,
                                     run=self.runtime.run_blocking)
            self._reset_timeout()
            try:
                status, qid = await self.finish(result, limit, envelope, arrived)
            finally:
                close_quietly(result.content)       # a large message's file
        finally:
            if self.sess is not None:
                self.sess.busy = False
        self.log_transaction(status, result.size, qid)
        memtrim.note(result.size)
        memtrim.release()
        self._set_post_data_state()
        self.accepted, self.rejected, self.txn_started = [], [], False
        await self.push(status)
        if self.closing or self.runtime.stopping.is_set():
            self.shutdown()

    def arrival_envelope(self) -> accept.Envelope:
        """The transaction as the acceptance pipeline sees it (taken at DATA)."""
        tls_version, cipher = self.tls_info()
        client = self.client
        return accept.Envelope(
            accept.SUBMISSION if client.submission else accept.SMTP,
            "" if self.envelope.mail_from == "<>" else self.envelope.mail_from, list(self.envelope.rcpt_tos),
            txid=queue_mod.new_id(), client_ip=self.peer_ip, helo=self.session.host_name or "",
            esmtp=self.session.extended_smtp, tls_version=tls_version, tls_cipher=cipher,
            auth_user=client.user, trusted=client.trusted, resolved=list(self.accepted))

    async def finish(self, result: DataResult, limit: int, envelope: accept.Envelope,
                     arrived: float) -> tuple[str, str]:
        """The reply to the end of DATA: what the acceptance pipeline decided."""
        rt, txid = self.runtime, envelope.txid
        if result.too_big:
            return (f"552 5.3.4 Message Size Exceeds Fixed Maximum Message Size. "
                    f"Size: {result.size // 1024} KB, Max size: {limit // 1024} KB"), ""
        if result.error is not None:
            rt.log.warning("smtp: %s: %s: cannot keep the message: %s", self.peer_ip, txid, result.error.strerror)
            return diskspace.INSUFFICIENT, ""
        arrival = accept.Arrival(envelope, result.content, rt.root, rt.settings, rt.directory, log=rt.log,
                                 arrived=arrived, bare_cr=result.bare_cr, bare_lf=result.bare_lf)
        try:
            verdict = await rt.run_blocking(rt.pipeline.run, arrival)
        except Exception as e:
            if storage_errors.is_storage_fault(e):
                # a full or read-only disk: temporary, and nothing of the message is left
                rt.log.warning("smtp: %s: %s not stored: %s", self.peer_ip, txid, e.strerror)
                return diskspace.INSUFFICIENT, ""
            rt.log.exception("smtp: %s: delivery of %s failed", self.peer_ip, txid)
            return "451 4.3.0 Local Error In Processing, Try Again Later", ""
        if isinstance(verdict, accept.Discard):
            rt.log.info("smtp: %s: %s discarded: %s", self.peer_ip, txid, verdict.reason)
            return f"250 2.0.0 Ok: queued as {txid}", txid
        if verdict is not accept.CONTINUE:
            if verdict.tag:
                self.rejected.append(verdict.tag)
            return verdict.reply, ""
        outcome = arrival.outcome
        if not outcome.delivered and outcome.queue_id is None:
            first = next(iter(outcome.rejected.values()), None)
            return (str(first) if first else "451 4.3.0 Local Error In Processing, Try Again Later"), ""
        rt.count("smtp_accepted")
        qid = outcome.queue_id or txid
        return f"250 2.0.0 Ok: queued as {qid}", qid

    # -- logging ---------------------------------------------------------------------------
    def log_transaction(self, status: str, size: int, qid: str, result: str | None = None) -> None:
        tls_version, _ = self.tls_info()
        self.runtime.log.info(
            "smtp: client=%s listener=%s helo=%s tls=%s user=%s from=<%s> to=%s rejected=%s size=%d "
            "result=%r queue_id=%s",
            self.peer_ip, self.listener_name, (self.session.host_name or "")[:100] if self.session else "",
            tls_version or "no", self.client.user or "-",
            "" if self.envelope.mail_from == "<>" else (self.envelope.mail_from or ""),
            ",".join(f"<{r}>" for r in self.envelope.rcpt_tos) or "-",
            ",".join(self.rejected) or "-", size, result or status[:120], qid or "-")

    def end_transaction(self, why: str) -> None:
        """A transaction that ended without DATA still gets its log line."""
        if self.txn_started and self.envelope is not None and self.envelope.mail_from:
            self.log_transaction("", 0, "", result=f"aborted ({why})")
        self.txn_started = False
        self.accepted, self.rejected = [], []


def _size_option(options) -> int:
    """The SIZE=n a client gave with MAIL FROM (RFC 1870), else 0."""
    for opt in options:
        if opt[:5].upper() == "SIZE=" and opt[5:].isascii() and opt[5:].isdigit():
            return int(opt[5:])
    return 0


def _helo_ok(name: str) -> bool:
    """A HELO/EHLO argument: a host name, or an address literal of RFC 5321 §4.1.3
    ([192.0.2.1], [IPv6:2001:db8::1]) that is a real address."""
    if not name:
        return False
    if not name.startswith("["):
        return bool(_HELO_NAME.match(name))
    if not name.endswith("]") or "%" in name:      # no IPv6 zone ids
        return False
    literal = name[1:-1]
    try:
        if literal[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(literal[5:])
        else:
            ipaddress.IPv4Address(literal)
    except ValueError:
        return False
    return True


async def start(runtime, name: str, listener) -> list:
    """Start one SMTP listener (smtp, submission or submissions)."""
    ssl_ctx = runtime.ssl_context() if listener.tls == "implicit" else None
    if listener.tls == "starttls":
        runtime.ssl_context()          # fail at start, not at the first STARTTLS, on a bad cert
    return await runtime.listen(name, lambda: MailSMTP(runtime, name, listener), listener, ssl=ssl_ctx,
                                busy_reply=overload.BUSY_SMTP)
