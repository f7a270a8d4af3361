"""Our SMTP session (ports 25, 587, 465): what each command means to mailctl. The
machinery under it (aiosmtpd, made faster, its replies rewritten) is adapter.py; every
reply text is in replies.py.

- PIPELINING, ENHANCEDSTATUSCODES, SMTPUTF8, 8BITMIME and SIZE advertised; AUTH offered
  on implicit TLS (aiosmtpd issue #281) and never on port 25;
- DATA streamed in chunks, bare CR / bare LF rejected after reading to the real end;
- limits: connections (total, per IP), messages per IP per minute, invalid commands,
  command line length, command timeout (421 4.4.2), total DATA time, size, recipients;
- AUTH PLAIN/LOGIN against the directory with failure delay and auto-ban;
- relay policy on the resolved address (policy.py);
- delivery before 250: every copy durable (engine.delivery) or 451 4.3.0 and none visible;
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

from .. import delivery, diskspace, headers as headers_mod, memtrim, queue as queue_mod, storage_errors
from ..largemsg import LargeMessage, close_quietly
from ..settings import message_size_limit
from . import admission, policy, quota, replies
from .adapter import AuthLineTooLong, SMTPAdapter
from .data import DataResult, fix_bare_newlines, head_of, header_block, read_data
from .received import received_header

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
        self.txn_started = False
        self.greeted = False                   # past the pregreet wait

    # -- the connection (hooks of the adapter) ----------------------------------------------
    def on_connect(self) -> None:
        self.client.ip = self.peer_ip
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
        reason = admission.refusal(rt, self.peer_ip)
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
        rt, settings = self.runtime, self.runtime.settings
        if len(self.accepted) >= settings.limits.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        sender = "" if self.envelope.mail_from == "<>" else self.envelope.mail_from
        result = policy.check_recipient(settings, rt.directory, self.client, sender, address)
        if not isinstance(result, policy.Accepted):
            self.rejected.append(f"{address[:100]}={result.code}")
            return str(result)
        size = self.declared_size()
        if result.max_size and size > result.max_size:
            self.rejected.append(f"{address[:100]}=552")
            return replies.too_big(size, result.max_size)
        if result.mailboxes and not result.resolution.external and any(a.quota_mb for a in result.mailboxes):
            if await rt.run_blocking(quota.all_refuse, rt.root, settings, result.mailboxes, size):
                self.rejected.append(f"{address[:100]}=quota")
                return quota.full_reply(settings)
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
            txid = queue_mod.new_id()
            header = self.received(txid)
            self._reset_timeout(settings.limits.data_timeout_s)
            result = await read_data(self._reader, limit, prefix=header, spill_dir=self.runtime.root.run_dir,
                                     run=self.runtime.run_blocking)
            self._reset_timeout()
            try:
                status, qid = await self.finish(result, limit, txid)
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

    def received(self, txid: str) -> bytes:
        tls_version, cipher = self.tls_info()
        return received_header(helo=self.session.host_name or "", ip=self.peer_ip,
                               hostname=self.runtime.settings.server.hostname, txid=txid,
                               esmtp=self.session.extended_smtp, tls_version=tls_version,
                               cipher=cipher, auth_user=self.client.user,
                               recipients=self.envelope.rcpt_tos)

    async def finish(self, result: DataResult, limit: int, txid: str) -> tuple[str, str]:
        rt, settings = self.runtime, self.runtime.settings
        if result.too_big:
            return replies.too_big(result.size, limit), ""
        if result.error is not None:
            rt.log.warning("smtp: %s: %s: cannot keep the message: %s", self.peer_ip, txid, result.error.strerror)
            return replies.INSUFFICIENT_STORAGE, ""
        content = result.content
        if result.bare_cr or result.bare_lf:
            if settings.relay.allow_bare_lf_from_trusted and self.client.trusted:
                content = await rt.run_blocking(fix_bare_newlines, content)
            elif result.bare_lf:
                return replies.BARE_LF, ""
            else:
                return replies.BARE_CR, ""
        if self.client.user:
            for addr in policy.header_senders(header_block(content, result.offset)):
                if not policy.owned_addresses_match(settings, rt.directory, self.client.user,
                                                    policy.normalize_sender(addr) or ""):
                    return replies.HEADER_FROM_NOT_OWNED, ""
        if self.client.submission and (self.client.user or self.client.trusted):
            if isinstance(content, LargeMessage):     # the header is in the part held in memory
                content.head = _add_missing_headers(content.head, result.offset, settings.server.hostname)
            else:
                content = _add_missing_headers(content, result.offset, settings.server.hostname)
        sender = "" if self.envelope.mail_from == "<>" else self.envelope.mail_from
        untrusted = not (self.client.user or self.client.trusted)    # its sender may be forged
        full = untrusted and await rt.run_blocking(quota.first_refusing, rt.root, settings,
                                                   [a for r in self.accepted for a in r.mailboxes], len(content))
        if full:
            self.rejected.append(f"{full}=quota")
            return quota.full_reply(settings), ""
        try:
            outcome = await rt.run_blocking(_deliver, rt, sender, list(self.envelope.rcpt_tos),
                                            content, self.client.user)
        except Exception as e:
            if storage_errors.is_storage_fault(e):
                # a full or read-only disk: temporary, and nothing of the message is left
                rt.log.warning("smtp: %s: %s not stored: %s", self.peer_ip, txid, e.strerror)
                return replies.INSUFFICIENT_STORAGE, ""
            rt.log.exception("smtp: %s: delivery of %s failed", self.peer_ip, txid)
            return replies.LOCAL_ERROR, ""
        if not outcome.delivered and outcome.queue_id is None:
            first = next(iter(outcome.rejected.values()), None)
            return (str(first) if first else replies.LOCAL_ERROR), ""
        if outcome.rejected:
            # Accepted at RCPT but refused now (the directory changed, a mailbox filled up):
            # the client gets 250 for the others, so these get a DSN, not silence; but never
            # to a sender nobody vouched for (backscatter): then the log alone says it.
            rt.log.warning("smtp: %s: %s: not delivered to %s%s", self.peer_ip, txid,
                           ", ".join(f"{k} ({v})" for k, v in outcome.rejected.items()),
                           "; no DSN to an unauthenticated sender" if untrusted else "")
            if not untrusted:
                await rt.run_blocking(_bounce_rejected, rt, sender, txid, outcome.rejected, head_of(content))
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


def _deliver(rt, sender: str, recipients: list[str], data: bytes, auth_user: str):
    # UIDs come at the reader's next sync, as for mail any MTA drops into a Maildir
    return delivery.deliver(rt.root, rt.settings, rt.directory, sender, recipients, data,
                            source="smtp", auth_user=auth_user, assign_uids=False,
                            quota_grace_percent=rt.settings.mailbox.quota_grace_percent)


async def start(runtime, name: str, listener) -> list:
    """Start one SMTP listener (smtp, submission or submissions)."""
    ssl_ctx = runtime.ssl_context() if listener.tls == "implicit" else None
    if listener.tls == "starttls":
        runtime.ssl_context()          # fail at start, not at the first STARTTLS, on a bad cert
    return await runtime.listen(name, lambda: MailSMTP(runtime, name, listener), listener, ssl=ssl_ctx,
                                busy_reply=f"{replies.OUT_OF_RESOURCES}\r\n".encode())


def _add_missing_headers(content: bytes, offset: int, hostname: str) -> bytes:
    """Submitted mail without Date or Message-ID gets them (RFC 6409 §8)."""
    block = header_block(content, offset)
    if not block.endswith(b"\r\n"):
        return content                       # no header/body separator: leave it as sent
    extra = headers_mod.missing(headers_mod.names_in(block), hostname)
    if not extra:
        return content
    at = offset + len(block)
    return bytes(content[:at]) + b"".join(line + b"\r\n" for line in extra) + bytes(content[at:])


def _bounce_rejected(rt, sender: str, txid: str, rejected: dict, content: bytes) -> None:
    """A failure DSN for recipients refused after the message was accepted."""
    from ..outbound import dsn
    now = time.time()
    env = queue_mod.Envelope(id=txid, sender=sender, recipients=[], created=now, next_attempt=now,
                             source="smtp")
    recipients = [queue_mod.Recipient(address=rcpt, status="failed", code=why.code, reply=str(why),
                                      dsn=why.status) for rcpt, why in rejected.items()]
    try:
        dsn.notify(rt.root, rt.settings, rt.directory, env, recipients, "failed", content, now=now, log=rt.log)
    except Exception as e:  # noqa: BLE001 - the accepted copies stand; the log says what was lost
        if storage_errors.is_storage_fault(e):
            rt.log.error("smtp: %s: could not write the DSN for %s: %s", txid, ", ".join(rejected), e.strerror)
        else:
            rt.log.exception("smtp: %s: could not write the DSN for %s", txid, ", ".join(rejected))
