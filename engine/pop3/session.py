"""One POP3 session (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595) and AUTH PLAIN (RFC 5034).

A session works on a snapshot of INBOX taken at login (maildrop.py). DELE only marks; the
marked messages are expunged at QUIT (UPDATE state), so a dropped connection changes nothing.
One session per mailbox at a time: a lock file (made with our pid inside, with a stale check)
under the Maildir, so another server process sharing the root sees it too.
engine.connection runs the connection (limits, greeting, reading, close).
"""
from __future__ import annotations

import asyncio
import base64

from .. import connection, connlimits, msgstream, overload, storage_errors
from ..errors import LockTimeout, MailError, NotFound, client_text
from ..locks import MailboxLock
from ..maildir import Maildir, to_crlf
from .maildrop import Snapshot, Uidls, open_inbox, table

MAX_LINE = 512                 # RFC 2449 §4: 255 octets per argument; be generous
MAX_BAD_COMMANDS = 20
STREAM_FROM = 1024 * 1024      # RETR of a message this large is sent in pieces from the file
INTERNAL_ERROR = "Internal error, try again later"     # the detail is in the server's log


class _Quit(Exception):
    pass


# POP3's words at each turn of a connection (engine.connection runs it).
POP3 = connection.Protocol(
    name="pop3", refusal="-ERR {}\r\n",
    refusals={connlimits.BANNED: "[SYS/TEMP] Your address is temporarily banned after failed logins",
              connlimits.FULL: "[SYS/TEMP] Too many connections, try again later",
              connlimits.ADDRESS_FULL: "[IN-USE] Too many connections from your address"},
    autologout=b"-ERR Autologout; idle for too long\r\n", busy=overload.BUSY_POP3,
    internal_error=b"-ERR [SYS/TEMP] Internal error, closing the connection\r\n",
    shutting_down=None, hangups=(_Quit,))


class Pop3Session(connection.Connection):
    def __init__(self, runtime, listener: str, reader, writer, tls_mode: str):
        super().__init__(runtime, reader, writer, tls_mode)
        self.user_name: str | None = None
        self.folder = None
        self.snapshot: Snapshot | None = None
        self.messages: list = []            # self.snapshot.messages
        self.deleted: set[int] = set()
        self.lock: MailboxLock | None = None
        self.bad = 0

    async def send(self, text: str | bytes) -> None:
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        self.writer.write(data if data.endswith(b"\r\n") else data + b"\r\n")
        await self.writer.drain()

    async def run(self) -> None:
        await connection.serve(self, POP3)

    def greeting(self) -> bytes:
        return b"+OK mailctl POP3 ready\r\n"

    async def finish(self) -> None:
        if self.lock is not None:
            await self.runtime.run_blocking(self.lock.release)

    async def readline(self) -> bytes | None:
        too_long = False
        while True:
            try:
                line = await self.reader.readuntil(b"\n")
                break
            except asyncio.LimitOverrunError as e:
                too_long = True
                await self.reader.readexactly(e.consumed)
            except asyncio.IncompleteReadError:
                return None
        if too_long or len(line) > MAX_LINE:
            return b"\0too-long"
        return line

    async def read_request(self) -> bytes | None:
        return await self.readline()

    async def handle(self, line: bytes) -> bool:
        if line == b"\0too-long":
            await self.error(f"Line too long (limit {MAX_LINE} bytes)")
            return True
        text = line.rstrip(b"\r\n").decode("utf-8", "replace")
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        handler = getattr(self, "cmd_" + verb, None) if verb.isalpha() else None
        if handler is None:
            await self.error(f"Unknown command {verb[:20]}")
            return True
        if getattr(handler, "auth", None) is True and self.account is None:
            await self.error("Log in first (USER/PASS or AUTH PLAIN)")
            return True
        if getattr(handler, "auth", None) is False and self.account is not None:
            await self.error("Not allowed after login")
            return True
        try:
            await handler(arg)
        except ConnectionError:
            raise
        except OSError as e:   # before MailError: a StorageError is both
            if overload.out_of_fds(e):
                self.runtime.log.warning("pop3: %s: %s failed: out of file descriptors", self.peer_ip, verb)
                await self.send(f"-ERR [SYS/TEMP] {overload.TRY_LATER}")
            else:
                await self.send(f"-ERR [SYS/TEMP] {self._storage_reply(e)}")
        except MailError as e:
            await self.send(f"-ERR {self._mail_error_reply(e)}")
        return True

    def _mail_error_reply(self, e: MailError) -> str:
        """An expected error's text with its RFC 2449/3206 code; never a path (when all
        it says names a file, the detail goes to the log)."""
        text = client_text(e, INTERNAL_ERROR)
        if text == INTERNAL_ERROR or isinstance(e, LockTimeout):     # a stuck lock: which one
            self.runtime.log.error("pop3: %s: %s", self.account.address if self.account else self.peer_ip, e)
        if isinstance(e, LockTimeout):
            return "[IN-USE] " + text
        return "[SYS/TEMP] " + text if text == INTERNAL_ERROR else text

    def _storage_reply(self, e: OSError) -> str:
        """A full or read-only disk answers with its fixed text; any other I/O fault is
        logged and answered without a path. Either way the session goes on."""
        who = self.account.address if self.account else self.peer_ip
        text = storage_errors.reason(e)
        if text is not None:
            self.runtime.log.warning("pop3: %s: %s", who, storage_errors.as_storage_error(e))
            return text
        self.runtime.log.error("pop3: %s: I/O error: %s", who, e)
        return INTERNAL_ERROR

    async def error(self, text: str) -> None:
        await self.send(f"-ERR {text}")
        self.bad += 1
        if self.bad >= MAX_BAD_COMMANDS:
            await self.send("-ERR Too many invalid commands")
            raise _Quit()

    # -- AUTHORIZATION state -------------------------------------------------------
    async def cmd_CAPA(self, arg):
        caps = ["TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE",
                "EXPIRE NEVER", "IMPLEMENTATION mailctl"]
        if self.account is None:
            if self.tls_mode == "starttls" and not self.tls_active:
                caps.append("STLS")
            if self.plaintext_ok:
                caps += ["USER", "SASL PLAIN"]
        await self.send("+OK Capability list follows\r\n" + "\r\n".join(caps) + "\r\n.")

    async def cmd_STLS(self, arg):
        if self.tls_active or self.tls_mode != "starttls":
            await self.error("TLS is already active or not offered here")
            return
        ctx = self.runtime.ssl_context()
        await self.send("+OK Begin TLS negotiation")
        buffered = getattr(self.reader, "_buffer", None)
        if buffered:
            buffered.clear()  # never run plaintext pipelined after STLS inside TLS
        try:
            await self.writer.start_tls(ctx)
        except (OSError, ConnectionError) as e:   # ssl.SSLError is an OSError: a client error
            self.runtime.log.info("pop3: %s: TLS handshake failed: %s", self.peer_ip, e)
            raise _Quit() from None
        self.tls_active = True
    cmd_STLS.auth = False

    async def cmd_USER(self, arg):
        if not self.plaintext_ok:
            await self.send("-ERR [AUTH] Use STLS (or port 995) before logging in")
            return
        if not arg.strip():
            await self.error("USER needs a name")
            return
        self.user_name = arg.strip()
        await self.send("+OK Send PASS")
    cmd_USER.auth = False

    async def cmd_PASS(self, arg):
        if self.user_name is None:
            await self.error("Send USER first")
            return
        user, self.user_name = self.user_name, None
        await self.login(user, arg)
    cmd_PASS.auth = False

    async def cmd_AUTH(self, arg):
        parts = arg.split()
        if not parts:
            await self.send("+OK\r\nPLAIN\r\n.")
            return
        if parts[0].upper() != "PLAIN":
            await self.error(f"Unsupported mechanism {parts[0][:20]}")
            return
        if not self.plaintext_ok:
            await self.send("-ERR [AUTH] Use STLS (or port 995) before logging in")
            return
        if len(parts) > 1:
            response = parts[1]
        else:
            await self.send("+ ")
            line = await self.readline()
            if line is None:
                raise _Quit()
            response = line.rstrip(b"\r\n").decode("ascii", "replace")
        if response == "*":
            await self.send("-ERR Authentication cancelled")
            return
        try:
            authzid, authcid, password = base64.b64decode(response if response != "=" else "",
                                                          validate=True).split(b"\0")
            user, pw = authcid.decode("utf-8"), password.decode("utf-8")
        except ValueError:
            await self.error("Invalid SASL PLAIN response")
            return
        if authzid and authzid.decode("utf-8", "replace") != user:
            await self.send("-ERR [AUTH] Logging in as another user is not allowed")
            return
        await self.login(user, pw)
    cmd_AUTH.auth = False

    async def login(self, user: str, password: str) -> None:
        rt = self.runtime
        account = await rt.authenticate(user, password, self.peer_ip, "pop3")
        if account is None:
            if rt.bans.is_banned(self.peer_ip):     # banned now, or before: this session ends
                await self.send("-ERR [SYS/TEMP] Your address is temporarily banned")
                raise _Quit()
            await self.send("-ERR [AUTH] Invalid credentials")
            return
        limit = rt.settings.mailbox.max_sessions_per_user
        if limit and rt.sessions.count(("imap", "pop3"), user=account.address) >= limit:
            await self.send(f"-ERR [SYS/TEMP] Too many sessions for {account.address}")
            return
        too_many = connlimits.user_ip_full(rt, account.address, self.peer_ip)
        if too_many:
            await self.send(f"-ERR [IN-USE] {too_many}")
            return
        md = Maildir.for_account(rt.root, account.domain, account.local)
        if not await rt.run_blocking(md.exists):
            await rt.run_blocking(md.create)
        lock = MailboxLock(md.path)
        try:
            locked = await rt.run_blocking(lock.acquire)
        except OSError as e:
            if not storage_errors.is_storage_fault(e):
                raise
            # a full or read-only disk: reading mail matters more than the lock, and
            # the deletions at QUIT then find the same storage fault (or room again)
            rt.log.warning("pop3: %s: no maildrop lock: %s", account.address, e.strerror)
            locked = True
        if not locked:
            await self.send("-ERR [IN-USE] The mailbox is open in another POP3 session")
            return
        try:
            folder, self.snapshot = await rt.run_blocking(open_inbox, md)
        except BaseException:
            await rt.run_blocking(lock.release)
            raise
        self.messages = self.snapshot.messages
        self.lock, self.folder, self.account = lock, folder, account
        self.session.user = account.address
        rt.log.info("pop3: %s logged in from %s", account.address, self.peer_ip)
        await self.send(f"+OK {len(self.messages)} messages")

    # -- TRANSACTION state ---------------------------------------------------------------
    def _msg(self, arg: str, allow_deleted: bool = False):
        """(number, message) for a message-number argument, or an error text."""
        n = _number(arg.strip().split(" ")[0] if arg.strip() else "")
        if n is None:
            return None, "Give a message number"
        if not 1 <= n <= len(self.messages):
            return None, f"No message {n} (there are {len(self.messages)})"
        if n in self.deleted and not allow_deleted:
            return None, f"Message {n} is already deleted"
        return n, self.messages[n - 1]

    async def _sizes(self) -> list[int]:
        snapshot = self.snapshot
        if snapshot.sizes is None:      # may read files: in the pool
            await self.runtime.run_blocking(snapshot.measure)
        return snapshot.sizes

    async def cmd_STAT(self, arg):
        sizes = await self._sizes()
        total = self.snapshot.total - sum(sizes[n - 1] for n in self.deleted)
        await self.send(f"+OK {len(sizes) - len(self.deleted)} {total}")
    cmd_STAT.auth = True

    def _live(self, values: list) -> tuple[range | list[int], list]:
        """(message numbers, their values) of the messages not marked deleted."""
        if not self.deleted:
            return range(1, len(values) + 1), values
        deleted = self.deleted
        numbers = [n for n in range(1, len(values) + 1) if n not in deleted]
        return numbers, [values[n - 1] for n in numbers]

    async def _send_table(self, line: str, numbers, values, body: bytes | None = None) -> None:
        """+OK, then `line` % (number, value) for each pair (or the body already made of
        them), then the final dot."""
        if body is None:
            body = table(line, numbers, values)
        self.writer.write(b"+OK\r\n" + body + b".\r\n")
        await self.writer.drain()

    async def cmd_LIST(self, arg):
        if arg.strip():
            n, m = self._msg(arg)
            await self.send(f"-ERR {m}" if n is None else f"+OK {n} {(await self._sizes())[n - 1]}")
            return
        sizes = await self._sizes()
        # Made with the sizes, in the worker thread: 100,000 lines are not formatted here.
        prepared = self.snapshot.list_body if not self.deleted else None
        await self._send_table("%d %d\r\n", *self._live(sizes), prepared)
    cmd_LIST.auth = True

    async def cmd_UIDL(self, arg):
        uidls = self.snapshot.uidls
        if uidls is None:
            uidls = self.snapshot.uidls = await self.runtime.run_blocking(Uidls, self.folder, self.messages)
        if arg.strip():
            n, m = self._msg(arg)
            await self.send(f"-ERR {m}" if n is None else f"+OK {n} {uidls.one(n - 1)}")
            return
        if uidls.kept:          # some UIDLs are kept ones: the table of strings
            await self._send_table("%d %s\r\n", *self._live(uidls.all()))
        else:                   # all are UID + UIDVALIDITY: formatted from the UIDs
            await self._send_table("%d %08x" + uidls.validity + "\r\n", *self._live(uidls.uids))
    cmd_UIDL.auth = True

    async def _read(self, m) -> bytes | None:
        try:
            return self.folder.read_if_cached(m)   # in memory: no hop to a worker thread
        except BlockingIOError:
            pass
        try:
            return await self.runtime.run_blocking(self.folder.read, m)
        except NotFound:
            return None

    async def cmd_RETR(self, arg):
        n, m = self._msg(arg)
        if n is None:
            await self.send(f"-ERR {m}")
            return
        if m.size >= STREAM_FROM:     # a large one in pieces from the file
            try:
                f = await self.runtime.run_blocking(self.folder.open, m)
            except NotFound:
                await self.send("-ERR [SYS/TEMP] The message was removed by another program")
                return
            await msgstream.send_dot_stuffed(self.runtime.run_blocking, f,
                                             lambda size: b"+OK %d octets\r\n" % size, self._write)
            return
        data = await self._read(m)
        if data is None:
            await self.send("-ERR [SYS/TEMP] The message was removed by another program")
            return
        self.writer.write(retr_reply(data))
        await self.writer.drain()
    cmd_RETR.auth = True

    async def cmd_TOP(self, arg):
        parts = arg.split()
        count = _number(parts[1]) if len(parts) == 2 else None
        if count is None:
            await self.error("TOP needs a message number and a line count")
            return
        n, m = self._msg(parts[0])
        if n is None:
            await self.send(f"-ERR {m}")
            return
        try:
            f = await self.runtime.run_blocking(self.folder.open, m)
        except NotFound:
            await self.send("-ERR [SYS/TEMP] The message was removed by another program")
            return
        with f:      # the header and the lines asked for: never the whole of a large message
            out = await self.runtime.run_blocking(msgstream.top, f, count)
        await self.send_multiline("+OK", out)
    cmd_TOP.auth = True

    async def _write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_multiline(self, first: str, data: bytes) -> None:
        # Byte-stuff lines starting with "." (RFC 1939 §3) and end with CRLF . CRLF.
        if data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        self.writer.write(first.encode() + b"\r\n" + data + b".\r\n")
        await self.writer.drain()

    async def cmd_DELE(self, arg):
        n, m = self._msg(arg)
        if n is None:
            await self.send(f"-ERR {m}")
            return
        self.deleted.add(n)
        await self.send(f"+OK Message {n} deleted")
    cmd_DELE.auth = True

    async def cmd_RSET(self, arg):
        self.deleted.clear()
        await self.send(f"+OK {len(self.messages)} messages")
    cmd_RSET.auth = True

    async def cmd_NOOP(self, arg):
        await self.send("+OK")
    cmd_NOOP.auth = True

    async def cmd_QUIT(self, arg):
        if self.account is not None and self.deleted:
            doomed = [self.messages[n - 1] for n in sorted(self.deleted)]
            try:
                await self.runtime.run_blocking(self.folder.expunge, doomed)
            except ConnectionError:
                raise
            except OSError as e:   # RFC 2449 SYS/TEMP: they stay for the next session
                why = self._storage_reply(e)
            except MailError:      # the uidlist lock held too long by another process
                why = "the mailbox is busy, try again later"
            else:
                why = None
            if why is not None:
                await self.send(f"-ERR [SYS/TEMP] Some messages were not deleted: {why}")
                raise _Quit()
        await self.send("+OK Bye")
        raise _Quit()


def retr_reply(stored: bytes) -> bytes:
    """RETR's whole answer for a stored message: +OK with its size as sent (CRLF line
    ends, the RFC822.SIZE), the lines with each leading '.' doubled (RFC 1939 §3) and
    the final '.', made with as few copies as it can (1000 RETRs in a row)."""
    data = to_crlf(stored)
    head = b"+OK %d octets\r\n" % len(data)
    if data.startswith(b"."):
        data = (b"." + data).replace(b"\r\n.", b"\r\n..")
    elif b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    return b"".join((head, data, b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"))


def _number(text: str) -> int | None:
    """A protocol number: ASCII digits only ("²".isdigit() is true, but int() refuses it)."""
    if not text or len(text) > 9 or not (text.isascii() and text.isdigit()):
        return None
    return int(text)
