"""Our SMTP session (ports 25, 587, 465): what each command means to mailctl. The
machinery under it (aiosmtpd, made faster, its replies rewritten) is adapter.py; every
reply text is in replies.py.

- PIPELINING, ENHANCEDSTATUSCODES, SMTPUTF8, 8BITMIME and SIZE advertised; AUTH offered
  on implicit TLS (aiosmtpd issue #281) and never on port 25;
- DATA streamed in chunks, bare CR / bare LF rejected after reading to the real end
  (bare LF made CRLF instead for the clients relay.bare_newline names);
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
import ipaddress
import re
import time

from aiosmtpd.smtp import AuthResult, LoginPassword, TLSSetupException

from .. import accept, diskspace, memtrim, queue as queue_mod, storage_errors
from ..largemsg import close_quietly
from ..settings import message_size_limit
from . import admission, policy, replies
from .adapter import AuthLineTooLong, SMTPAdapter
from .data import DataResult, mends_bare_lf, read_data

IDENT = "ESMTP mailctl"
_HELO_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,253})$")


class MailSMTP(SMTPAdapter):
    def __init__(self, runtime, name: str, listener):
        self.runtime = runtime
        self.listener_name = name
        self.listener = listener
        settings = runtime.settings
        limits = settings.limits
        implicit = listener.tls == "implicit"
        tls_ctx = runtime.ssl_context() if listener.tls == "starttls" else None
        super().__init__(command_line_limit=limits.max_command_line,
                         data_size_limit=message_size_limit(settings), enable_SMTPUTF8=True, decode_data=False,
                         hostname=settings.server.hostname, ident=IDENT, tls_context=tls_ctx,
                         timeout=limits.command_timeout_s,
                         auth_require_tls=not (implicit or settings.auth.allow_plaintext),
                         loop=asyncio.get_running_loop())
        self.implicit_tls = implicit
        self.client = policy.Client("", name)
        self.sess = None
        self.accepted: list[policy.Accepted] = []
        self.rejected: list[str] = []
        self.transaction: dict = {}            # what RCPT-time stages keep for the transaction
        self.txn_started = False
        self.greeted = False                   # past the pregreet wait

    # -- the connection (hooks of the adapter) ----------------------------------------------
    def on_connect(self) -> None:
        self.client.ip = self.peer_ip
        self.client.local_ip = (self.transport.get_extra_info("sockname") or ("",))[0]
        self.client.trusted = policy.in_networks(self.peer_ip, self.runtime.settings.relay.trusted_networks)
        self.sess = self.runtime.sessions.open(self.listener_name, self.peer_ip)
        self.sess.closer = self.shutdown

    def on_hangup(self) -> None:
        """A client that talked and hung up during the pregreet wait (which aiosmtpd then
        cancels) is counted all the same."""
        if not self.greeted and self.sess is not None and admission.talked(self.reader):
            self.greeted = True
            admission.count_pregreet_soon(self.runtime, self.peer_ip)

    def on_disconnect(self) -> None:
        if self.sess is not None:
            self.end_transaction("disconnected")
            self.sess.close()
            self.sess = None

    async def admit(self) -> bool:
        rt = self.runtime
        reason = admission.refusal(rt, self.peer_ip, self.listener_name)
        if reason:
            rt.log.info("smtp: %s refused: %s", self.peer_ip, reason)
            await self.push(reason)
            self.transport.close()
            return False
        pregreet = await admission.talks_first(rt, self.listener_name, self.reader)
        self.greeted = True
        if pregreet:
            await admission.count_pregreet(rt, self.peer_ip)     # before the reply: its next try sees a ban
            await self._send(f"{replies.PREGREET}\r\n".encode())
            self.transport.close()
            return False
        return True

    def idle_allowed(self) -> float:
        return admission.idle_limit(self.runtime, self.peer_ip)

    def on_timeout(self) -> None:
        self.runtime.log.info("smtp: %s timed out", self.peer_ip)

    def is_busy(self) -> bool:
        return self.sess is not None and self.sess.busy

    def max_invalid_commands(self) -> int:
        return self.runtime.settings.limits.max_invalid_commands

    def on_quit(self) -> str:
        self.end_transaction("quit")
        return replies.BYE

    def on_exception(self, error: BaseException) -> str:
        if isinstance(error, TLSSetupException):
            # A client that sent plaintext (or gave up) after STARTTLS: its error, not ours.
            self.runtime.log.info("smtp: %s: TLS handshake failed: %s", self.peer_ip, error.__cause__ or error)
            return replies.TLS_HANDSHAKE_FAILED
        if storage_errors.is_storage_fault(error):
            # a write of some session state met a full or read-only disk: temporary, no bug
            self.runtime.log.warning("smtp: %s: %s", self.peer_ip, error)
            return replies.INSUFFICIENT_STORAGE
        self.runtime.log.exception("smtp: %s: internal error", self.peer_ip)
        return replies.LOCAL_ERROR_CLOSING

    # -- EHLO / HELO ------------------------------------------------------------------
    async def smtp_EHLO(self, hostname: str):
        if not _helo_ok(hostname):
            await self.push(replies.EHLO_INVALID)
            return
        self.end_transaction("reset")
        self.new_envelope()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        lines = [self.hostname, "PIPELINING"]
        if self.data_size_limit:
            lines.append(f"SIZE {self.data_size_limit}")
        lines += ["8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]
        tls_active = self.implicit_tls or self.tls_active
        if self.tls_context and not tls_active:
            lines.append("STARTTLS")
        if self.client.submission and (tls_active or not self.auth_require_tls):
            lines.append("AUTH PLAIN LOGIN")
        await self.push(replies.ehlo(lines), raw=True)

    async def smtp_HELO(self, hostname: str):
        if not _helo_ok(hostname):
            await self.push(replies.HELO_INVALID)
            return
        self.end_transaction("reset")
        self.new_envelope()
        self.session.extended_smtp = False
        self.session.host_name = hostname
        await self.push(replies.hello(self.hostname), raw=True)

    async def smtp_RSET(self, arg: str):
        if arg:
            await self.push(replies.RSET_SYNTAX)
            return
        self.end_transaction("reset")
        self.new_envelope()
        await self.push(replies.OK)

    async def smtp_VRFY(self, arg: str):
        await self.push(replies.VRFY_DISALLOWED)

    async def smtp_EXPN(self, arg: str):
        await self.push(replies.EXPN_DISALLOWED)

    async def smtp_TURN(self, arg: str):
        await self.push(replies.TURN_DISALLOWED)

    # -- AUTH -------------------------------------------------------------------------
    async def smtp_AUTH(self, arg: str) -> None:
        if not self.client.submission:
            await self.push(replies.AUTH_NOT_OFFERED)
            return
        if self.envelope.mail_from:
            await self.push(replies.AUTH_IN_TRANSACTION)
            return
        try:
            await super().smtp_AUTH(arg)
        except AuthLineTooLong:
            await self.push(replies.AUTH_LINE_TOO_LONG)

    async def auth_PLAIN(self, _, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self._challenge("")
        else:
            blob = self._b64(args[1])
        if blob is None:
            await self.push(replies.CANNOT_DECODE)
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push(replies.CANNOT_DECODE)
            return AuthResult(success=False, handled=True)
        return await self._login(parts[1], parts[2])

    async def auth_LOGIN(self, _, args: list[str]) -> AuthResult:
        user = self._b64(args[1]) if len(args) > 1 else await self._challenge("Username:")
        password = await self._challenge("Password:") if user is not None else None
        if user is None or password is None:
            await self.push(replies.CANNOT_DECODE)
            return AuthResult(success=False, handled=True)
        return await self._login(user, password)

    async def _challenge(self, prompt: str) -> bytes | None:
        await self.push(replies.challenge(prompt), raw=True)
        line = (await self.read_auth_line()).strip()
        if line == b"*":
            return None
        return self._b64(line)

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
                await self.push(replies.BANNED)
            else:
                await self.push(replies.AUTH_FAILED)
            return AuthResult(success=False, handled=True)
        self.client.user = account.address
        if self.sess is not None:
            self.sess.user = account.address
        self.runtime.log.info("smtp: %s authenticated as %s on %s", self.peer_ip, account.address,
                              self.listener_name)
        return AuthResult(success=True, auth_data=LoginPassword(account.address.encode(), b""),
                          message=replies.AUTH_OK)

    # -- the transaction -----------------------------------------------------------------
    async def on_mail(self, address: str, options: list[str]) -> str:
        rt, settings = self.runtime, self.runtime.settings
        sender = policy.normalize_sender(address)
        if sender is None:
            return replies.SENDER_INVALID
        rejection = policy.check_sender(settings, rt.directory, self.client, sender)
        if rejection:
            return str(rejection)
        per_minute = settings.limits.messages_per_ip_per_minute
        shared = rt.sessions.shared       # counted across every serving process
        if per_minute and shared is not None and not shared.allow(f"messages {self.peer_ip}", per_minute):
            return replies.TOO_MANY_MESSAGES
        if not await self.room_for(_size_option(options)):
            return replies.INSUFFICIENT_STORAGE
        self.envelope.mail_from = sender if sender else "<>"
        self.envelope.mail_options.extend(options)
        self.accepted, self.rejected, self.txn_started = [], [], True
        self.transaction = {}
        return replies.SENDER_OK

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

    def declared_size(self) -> int:
        return _size_option(self.envelope.mail_options)

    async def on_rcpt(self, address: str, options: list[str]) -> str:
        rt = self.runtime
        sender = "" if self.envelope.mail_from == "<>" else self.envelope.mail_from
        check = accept.RcptCheck(rt, self.client, sender, address, self.declared_size(), len(self.accepted),
                                 helo=self.session.host_name or "", transaction=self.transaction)
        verdict = await rt.pipeline.check_recipient(check)      # engine/accept/pipeline.py
        if verdict is not accept.CONTINUE:
            if verdict.tag:
                self.rejected.append(verdict.tag)
            return verdict.reply
        result = check.result
        if result.address not in self.envelope.rcpt_tos:
            self.envelope.rcpt_tos.append(result.address)
            self.accepted.append(result)
        return replies.RECIPIENT_OK

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if not self.envelope.mail_from:
            await self.push(replies.SENDER_FIRST)
            return
        if not self.envelope.rcpt_tos:
            await self.push(replies.RECIPIENT_FIRST)
            return
        if arg:
            await self.push(replies.DATA_SYNTAX)
            return
        settings = self.runtime.settings
        limit = self.data_size_limit or 0
        domain_limits = [a.max_size for a in self.accepted if a.max_size]
        if domain_limits:
            limit = min([limit] + domain_limits) if limit else min(domain_limits)
        if self.sess is not None:
            self.sess.busy = True
        try:
            await self.push(replies.START_DATA, raw=True)
            envelope = self.arrival_envelope()
            arrived = time.time()
            self._reset_timeout(settings.limits.data_timeout_s)
            mend_lf = mends_bare_lf(settings.relay.bare_newline, bool(self.client.user), self.client.trusted)
            result = await read_data(self._reader, limit, spill_dir=self.runtime.root.run_dir,
                                     run=self.runtime.run_blocking, mend_lf=mend_lf)
            self._reset_timeout()
            try:
                status, qid = await self.finish(result, limit, envelope, arrived)
            finally:
                close_quietly(result.content)       # a large message's file
        finally:
            if self.sess is not None:
                self.sess.busy = False
        self.txn_started = False
        try:
            await self.push(status)             # the client waits for this, not for our log line
        finally:
            self.log_transaction(status, result.size, qid)
            memtrim.note(result.size)
            memtrim.release()
            self._set_post_data_state()
            self.accepted, self.rejected = [], []
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
            auth_user=client.user, trusted=client.trusted, resolved=list(self.accepted),
            spf=self.transaction.get("spf"), scores=tuple(self.transaction.get("scores", {}).values()))

    async def finish(self, result: DataResult, limit: int, envelope: accept.Envelope,
                     arrived: float) -> tuple[str, str]:
        """The reply to the end of DATA: what the acceptance pipeline decided."""
        rt, txid = self.runtime, envelope.txid
        if result.too_big:
            return replies.too_big(result.size, limit), ""
        if result.error is not None:
            rt.log.warning("smtp: %s: %s: cannot keep the message: %s", self.peer_ip, txid, result.error.strerror)
            return replies.INSUFFICIENT_STORAGE, ""
        if result.mended:
            rt.log.info("smtp: %s: %s: bare LF line ends made CR LF (relay.bare_newline)", self.peer_ip, txid)
        arrival = accept.Arrival(envelope, result.content, rt.root, rt.settings, rt.directory, log=rt.log,
                                 arrived=arrived, bare_cr=result.bare_cr, bare_lf=result.bare_lf)
        try:
            verdict = await rt.run_blocking(rt.pipeline.run, arrival)
        except Exception as e:
            if storage_errors.is_storage_fault(e):
                # a full or read-only disk: temporary, and nothing of the message is left
                rt.log.warning("smtp: %s: %s not stored: %s", self.peer_ip, txid, e.strerror)
                return replies.INSUFFICIENT_STORAGE, ""
            rt.log.exception("smtp: %s: delivery of %s failed", self.peer_ip, txid)
            return replies.LOCAL_ERROR, ""
        for name in arrival.counted:        # what the stages counted (spam_marked ...)
            rt.count(name)
        if isinstance(verdict, accept.Discard):
            rt.log.info("smtp: %s: %s discarded: %s", self.peer_ip, txid, verdict.reason)
            return replies.queued(txid), txid
        if verdict is not accept.CONTINUE:
            if verdict.tag:
                self.rejected.append(verdict.tag)
            return verdict.reply, ""
        outcome = arrival.outcome
        if not outcome.delivered and outcome.queue_id is None:
            first = next(iter(outcome.rejected.values()), None)
            return (str(first) if first else replies.LOCAL_ERROR), ""
        rt.count("smtp_accepted")
        qid = outcome.queue_id or txid
        return replies.queued(qid), qid

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
                                busy_reply=f"{replies.OUT_OF_RESOURCES}\r\n".encode())
