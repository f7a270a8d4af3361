"""One IMAP connection: reading commands (with literals), the state machine of
RFC 3501 §3, authentication, limits, and writing responses.

The commands live in modules by family, put together in commands.py (LOGIN,
AUTHENTICATE and STARTTLS, which change the connection, stay here); the selected
folder's view of the disk is selected.py. All disk work goes through runtime.run_blocking.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time

from .. import connection, connlimits, deflatestream, memtrim, overload, storage_errors
from ..errors import LockTimeout, MailError
from ..replybatch import drain_held
from ..spool import Spool
from . import rev2
from .parser import LITERAL_AT_END, Atom, ParseError, as_text, literal_announced, tokenize
from .commands import Commands
from .errors import SERVER_BUG, CommandError, bad, mail_error_text, no
from .messages import QUOTA_EXCEEDED

MAX_LINE = 64 * 1024                  # one command line (literals excluded)
MAX_COMMAND = 2 * 1024 * 1024         # a whole command other than APPEND, literals included
MAX_SMALL_LITERAL = 1024 * 1024       # a literal outside APPEND
MAX_PREAUTH_LITERAL = 8192          # a literal before login (user name, password)
SPOOL_FROM = 256 * 1024             # an APPEND literal this large goes to a file as it arrives
SPOOL_WRITE = 1024 * 1024           # ... in writes of this size
MAX_APPEND_LITERALS = 1000          # messages and CATENATE parts in one APPEND (MULTIAPPEND)
MAX_BAD_COMMANDS = 20
SERVER_NAME = "mailctl"

BASE_CAPS = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UIDPLUS",
             "MOVE", "UNSELECT", "CHILDREN", "SPECIAL-USE", "QUOTA", "BINARY",
             "CONDSTORE", "QRESYNC",
             "ESEARCH", "SEARCHRES", "WITHIN", "SORT", "SORT=DISPLAY", "ESORT", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT",
             "LIST-EXTENDED", "LIST-STATUS", "CREATE-SPECIAL-USE", "STATUS=SIZE",
             "METADATA",
             "MULTIAPPEND", "CATENATE",
             "COMPRESS=DEFLATE",
             "ACL", "RIGHTS=texk",                 # RFC 4314 (imap/access.py, aclcmd.py)
             "PREVIEW", "SAVEDATE"]                # RFC 8970 (imap/preview.py), RFC 8514 (imap/savedate.py)


class Disconnect(Exception):
    """End the connection (after whatever was already written)."""


class ImapSession(Commands, connection.Connection):
    def __init__(self, runtime, listener: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, tls_mode: str):
        super().__init__(runtime, reader, writer, tls_mode)
        self.listener = listener
        self.maildir = None
        self.selected = None
        self.enabled: set[str] = set()
        self.rev = rev2.REV1                 # until ENABLE IMAP4rev2 (imap/rev2.py)
        self.bad_count = 0
        self.closing = False
        self.deadline = 0.0                  # time.monotonic() at which the running command stops
        self._held: list[bytes] = []
        # An APPEND's literals written to tmp/ as they arrived, by their offset in the
        # command (parser.tokenize puts them in place); None outside an APPEND.
        self.spools: dict[int, Spool] | None = None

    # -- capabilities ----------------------------------------------------------------
    def capabilities(self) -> list[str]:
        caps = list(BASE_CAPS)
        if self.account is None:
            if not self.tls_active and self.tls_mode == "starttls":
                caps.append("STARTTLS")
            if self.plaintext_ok:
                caps.append("AUTH=PLAIN")
            else:
                caps.append("LOGINDISABLED")
        limit = self.append_limit()
        caps.append(f"APPENDLIMIT={limit}" if limit else "APPENDLIMIT=0")
        return caps

    def append_limit(self) -> int:
        return int(self.runtime.settings.mailbox.append_limit_mb * 1024 * 1024)

    # -- output -------------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        self.writer.write(drain_held(self._held, data))
        await self.writer.drain()

    def hold(self, data: bytes) -> None:
        """Output the next send() carries along (a small FETCH reply and its tagged OK)."""
        self._held.append(data)

    async def untagged(self, text: str) -> None:
        await self.send(b"* " + text.encode("utf-8") + b"\r\n")

    # -- the connection ----------------------------------------------------------------
    async def run(self) -> None:
        await connection.serve(self, IMAP)

    def greeting(self) -> bytes:
        caps = " ".join(self.capabilities())
        return f"* OK [CAPABILITY {caps}] {SERVER_NAME} IMAP4rev1 ready\r\n".encode()

    async def finish(self) -> None:
        self.drop_spool()

    async def read_request(self) -> bytes | CommandError | None:
        """The next command; the CommandError when it was refused while being read."""
        try:
            return await self.read_command()
        except CommandError as e:
            return e

    async def handle(self, request: bytes | CommandError) -> bool:
        if isinstance(request, CommandError):
            self.drop_spool()           # the message of a refused command
            await self._bad_input(request)
            return True
        try:
            await self.execute(request)
        finally:
            self.drop_spool()           # a spooled message no command took
        return not self.closing

    async def _bad_input(self, e: CommandError) -> None:
        tag = getattr(e, "tag", None) or "*"
        await self.send(f"{tag} {e.status} {e.text}\r\n".encode())
        self.bad_count += 1
        if self.bad_count >= MAX_BAD_COMMANDS:
            await self.send(b"* BYE Too many invalid commands\r\n")
            raise Disconnect()

    # -- reading ------------------------------------------------------------------------
    async def readline(self) -> bytes | None:
        """One line including its LF; None at EOF; CommandError for an over-long line
        (which is read to its end, so the stream stays in step)."""
        head = None
        while True:
            try:
                line = await self.reader.readuntil(b"\n")
                break
            except asyncio.LimitOverrunError as e:
                skipped = await self.reader.readexactly(e.consumed)
                head = skipped[:100] if head is None else head
            except asyncio.IncompleteReadError as e:
                if not e.partial:
                    return None
                raise Disconnect() from None
        if head is not None or len(line) > MAX_LINE:
            err = bad(f"Command line too long (limit {MAX_LINE} bytes)")
            err.tag = _tag_of(head if head is not None else line)
            raise err
        return line

    async def read_command(self) -> bytes | None:
        first = await self.readline()
        if first is None:
            return None
        chunks = [first]
        line = first
        total = len(first)
        tag = is_append = None      # looked at only when a literal is announced
        in_memory = literals = appended = 0    # an APPEND's literal bytes in memory, its literals, all bytes
        room = None                 # the quota's room for an APPEND (None: no limit), read once
        while True:
            ann = literal_announced(line)
            if ann is None:
                break
            if is_append is None:
                tag, is_append = _tag_of(first), _command_of(first) == "APPEND"
                if is_append:
                    self.spools = {}
                    with contextlib.suppress(OSError):    # unreadable now: the commit checks again
                        room = self.maildir and await self.runtime.run_blocking(self.maildir.quota.room)
            size, sync = ann
            literals += 1
            appended += size if is_append else 0
            limit = self.append_limit() if is_append else MAX_SMALL_LITERAL
            if self.account is None and _command_of(first) not in _PREAUTH_LITERALS:
                err = bad(f"{_command_of(first)[:20] or 'That command'} needs you to log in first")
            elif self.account is None and size > MAX_PREAUTH_LITERAL:
                err = bad(f"Literal of {size} bytes is too large before login")
            elif is_append and self.append_limit() == 0:
                err = no("[TOOBIG] APPEND is disabled on this server")
            elif is_append and literals > MAX_APPEND_LITERALS:
                err = bad(f"APPEND takes at most {MAX_APPEND_LITERALS} messages and parts")
            elif size > limit:
                err = CommandError("NO" if is_append else "BAD",
                                   f"{'[TOOBIG] ' if is_append else ''}Literal of {size} bytes is "
                                   f"larger than the limit of {limit} bytes")
            elif room is not None and appended > room and (sync or size <= MAX_SMALL_LITERAL):
                # refused before it fills tmp/ (a large LITERAL+ one is read, and refused at the end)
                err = no(QUOTA_EXCEEDED)
            elif not is_append and total + size > MAX_COMMAND:
                err = bad(f"Command larger than {MAX_COMMAND} bytes")
            else:
                err = None
            # a large literal, or one past what an APPEND may hold in memory, goes to a file
            spool_it = is_append and err is None and (size >= SPOOL_FROM or in_memory + size > MAX_COMMAND)
            if spool_it:
                try:
                    literal8 = LITERAL_AT_END.search(line).group(0).startswith(b"~")
                    spool = await self.runtime.run_blocking(Spool, self.maildir.path / "tmp", literal8)
                    self.spools[sum(map(len, chunks[:-1])) + LITERAL_AT_END.search(line).start()] = spool
                except OSError as e:
                    err = no(_cannot_store(e))
            if err is not None:
                err.tag = tag
                if not sync:
                    # LITERAL+ (RFC 7888 §4): the client sends the data anyway. Skip a
                    # small one and stay in step; we cannot skip gigabytes, so then answer
                    # and hang up.
                    if size <= MAX_SMALL_LITERAL:
                        await self._discard_rest(size)
                        raise err
                    await self.send(f"{tag or '*'} {err.status} {err.text}\r\n".encode())
                    await self.send(b"* BYE Literal too large\r\n")
                    raise Disconnect()
                raise err
            if sync:
                await self.send(b"+ Ready for literal data\r\n")
            if spool_it:
                # the message goes to tmp/; the command carries an empty literal in its place
                await self._receive_into_spool(spool, size, tag)
                chunks[-1] = line[:LITERAL_AT_END.search(line).start(1)] + b"0}\r\n"
            else:
                chunks.append(await self.reader.readexactly(size))
                in_memory += size
            total += size
            line = await self.readline()
            if line is None:
                return None
            chunks.append(line)
            total += len(line)
        raw = b"".join(chunks)
        memtrim.note(total)
        return raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]

    async def _receive_into_spool(self, spool: Spool, size: int, tag: str | None) -> None:
        """Write a literal to spool as it arrives. When the disk refuses it, the rest is
        still read (the stream stays in step) and the command is answered NO."""
        run = self.runtime.run_blocking
        failed: OSError | None = None
        pending = bytearray()
        left = size
        while left or pending:
            piece = await self.reader.read(min(left, SPOOL_WRITE)) if left else b""
            if left and not piece:
                raise Disconnect()
            left -= len(piece)
            if failed is not None:
                continue
            pending += piece
            if len(pending) >= SPOOL_WRITE or not left:
                try:
                    await run(spool.write, bytes(pending))
                    if not left:
                        await run(spool.finish)
                except OSError as e:
                    failed = e
                pending.clear()
        if failed is not None:
            self.drop_spool()
            await self._discard_rest(0)
            err = no(_cannot_store(failed))
            err.tag = tag
            raise err

    def drop_spool(self) -> None:
        """Discard an APPEND's spooled literals (staged ones were renamed away already)."""
        spools, self.spools = self.spools, None
        for spool in (spools or {}).values():
            spool.discard()

    async def _discard_rest(self, size: int) -> None:
        """Read and drop a refused non-synchronising literal and the rest of its command."""
        memtrim.note(size)
        await self.reader.readexactly(size)
        while True:
            line = await self.readline()
            if line is None:
                raise Disconnect()
            ann = literal_announced(line)
            if ann is None:
                return
            if ann[1] or ann[0] > MAX_SMALL_LITERAL:
                raise Disconnect()   # a synchronising literal now, or a huge one: give up
            await self.reader.readexactly(ann[0])

    # -- dispatch -------------------------------------------------------------------------
    async def execute(self, raw: bytes):
        tag = None      # until the tokens give it: _tag_of(raw) in an error reply
        name = ""
        try:
            tokens = tokenize(raw, spooled=self.spools)
            if len(tokens) < 2 or not isinstance(tokens[0], Atom) or not isinstance(tokens[1], Atom):
                raise bad("Expected: tag command [arguments]")
            tag = str(tokens[0])
            if not _valid_tag(tag):
                tag = "*"
                raise bad("Invalid tag")
            name = tokens[1].upper()
            handler = getattr(self, "cmd_" + name.replace(".", "_"), None) if name.isalpha() else None
            if handler is None:
                raise bad(f"Unknown command {str(tokens[1])[:30]}")
            need = getattr(handler, "state", "any")
            if need == "auth" and self.account is None:
                raise bad(f"{name} needs you to log in first")
            if need == "selected" and self.account is None:
                raise bad(f"{name} needs you to log in first")
            if need == "selected" and self.selected is None:
                raise bad(f"{name} needs a selected folder (SELECT one first)")
            if need == "noauth" and self.account is not None:
                raise bad("Already logged in")
            if need == "selected":
                await self.check_selected_rights()     # rights taken away meanwhile count now
            if name in _NO_ARGUMENTS and len(tokens) > 2:
                raise bad(f"{name} takes no arguments")
            if self.session is not None:
                self.session.busy = True
            # Work in worker threads stops at this deadline too (see search.within). IDLE
            # only waits, and ends itself at the idle timeout (general.py).
            limits = self.runtime.settings.mailbox
            limit = None if name == "IDLE" else limits.command_time_limit_s
            self.deadline = time.monotonic() + (limit or limits.idle_timeout_s)
            self.watchdog.watch(limit)
            try:
                text = await handler(tag, tokens[2:])
            except asyncio.CancelledError:
                if not self.watchdog.expired():
                    raise
                raise TimeoutError() from None      # answered below
            finally:
                self.watchdog.stop()
                if self.session is not None:
                    self.session.busy = False
            if text is None:  # the handler wrote its own completion (STARTTLS, LOGOUT)
                return tag, "OK"
            if self.selected is not None and name not in _NO_UPDATES:
                await self.announce_changes()
            elif self.selected is not None and self.selected.rescan_due:
                # the command found a message gone from the disk: say now what may be said
                await self.announce_changes(expunge=name not in _BY_SEQUENCE)
            await self.send(f"{tag} OK {text}\r\n".encode())
            self.bad_count = 0
            return tag, "OK"
        except ParseError as e:
            status, text = "BAD", str(e)
        except CommandError as e:
            status, text = e.status, e.text
        except ConnectionError:
            raise                  # the client went away: not a fault of the disk
        except asyncio.TimeoutError:
            status, text = "NO", "Command took too long and was stopped"
        except OSError as e:       # before MailError: a StorageError is both
            if overload.out_of_fds(e):
                self.runtime.log.warning("imap: %s: %s failed: out of file descriptors", self.peer_ip, tag)
                status, text = "NO", f"[UNAVAILABLE] {overload.TRY_LATER}"
            else:
                status, text = "NO", self._storage_reply(e)
        except MailError as e:
            status, text = "NO", self._mail_error_reply(e)
        if tag is None:
            tag = _tag_of(raw) or "*"
        if status == "BAD":
            self.bad_count += 1
        if self.selected is not None and status == "NO":
            with contextlib.suppress(Exception):
                await self.announce_changes(expunge=name not in _BY_SEQUENCE)
        await self.send(f"{tag} {status} {_one_line(text)}\r\n".encode())
        if self.bad_count >= MAX_BAD_COMMANDS:
            await self.send(b"* BYE Too many invalid commands\r\n")
            raise Disconnect()
        return tag, status

    def _storage_reply(self, e: OSError) -> str:
        """A full or read-only disk answers with its fixed text; any other I/O fault is
        logged and answered without a path. Either way the session goes on serving."""
        text = storage_errors.imap_text(e)
        if text is not None:
            self.runtime.log.warning("imap: %s: %s", self.account and self.account.address,
                                     storage_errors.as_storage_error(e))
            return text
        self.runtime.log.error("imap: %s: I/O error: %s", self.account and self.account.address, e)
        return SERVER_BUG

    def _mail_error_reply(self, e: MailError) -> str:
        """An expected error's NO text; when all it says names a file, the detail goes
        to the log and the client gets Dovecot's "internal error"."""
        text = mail_error_text(e)
        if text == SERVER_BUG or isinstance(e, LockTimeout):     # a stuck lock: which one
            self.runtime.log.error("imap: %s: %s", self.account and self.account.address, e)
        return text

    # -- authentication -------------------------------------------------------------------
    async def login(self, user: str, password: str) -> str:
        rt = self.runtime
        account = await rt.authenticate(user, password, self.peer_ip, "imap")
        if account is None:
            if rt.bans.is_banned(self.peer_ip):     # banned now, or before: this session ends
                self.closing = True
                raise no("[UNAVAILABLE] Your address is temporarily banned after failed logins")
            raise no("[AUTHENTICATIONFAILED] Invalid credentials")
        limit = rt.settings.mailbox.max_sessions_per_user
        if limit:
            if rt.sessions.count(("imap", "pop3"), user=account.address) >= limit:
                raise no(f"[LIMIT] Too many sessions for {account.address} (limit {limit})")
        too_many = connlimits.user_ip_full(rt, account.address, self.peer_ip)
        if too_many:
            raise no(f"[LIMIT] {too_many}")
        from ..maildir import Maildir
        md = Maildir.for_account(rt.root, account.domain, account.local)
        if not await rt.run_blocking(md.exists):
            await rt.run_blocking(md.create)
        self.account = account
        self.maildir = md
        self.session.user = account.address
        days = rt.settings.mailbox.autoexpunge_days
        if days:
            from ..mailbox_admin import autoexpunge
            # Housekeeping in the background; a failure must not fail the login.
            task = asyncio.ensure_future(rt.run_blocking(autoexpunge, md, days))
            task.add_done_callback(lambda t: t.cancelled() or t.exception() and rt.log.warning(
                "imap: autoexpunge for %s failed: %s", account.address, t.exception()))
        rt.log.info("imap: %s logged in from %s", account.address, self.peer_ip)
        return f"[CAPABILITY {' '.join(self.capabilities())}] Logged in"

    def _require_plaintext_ok(self) -> None:
        if not self.plaintext_ok:
            raise no("[PRIVACYREQUIRED] Use STARTTLS (or port 993) before logging in")

    async def cmd_LOGIN(self, tag, args):
        if len(args) != 2:
            raise bad("LOGIN needs a user name and a password")
        self._require_plaintext_ok()
        return await self.login(as_text(args[0], "user name"), as_text(args[1], "password"))
    cmd_LOGIN.state = "noauth"

    async def cmd_AUTHENTICATE(self, tag, args):
        if not args or len(args) > 2:
            raise bad("AUTHENTICATE needs a mechanism")
        mech = as_text(args[0], "mechanism").upper()
        if mech != "PLAIN":
            raise no(f"Unsupported authentication mechanism {mech[:20]}")
        self._require_plaintext_ok()
        if len(args) == 2:  # SASL-IR (RFC 4959)
            response = as_text(args[1], "initial response")
            if response == "=":
                response = ""
        else:
            await self.send(b"+ \r\n")
            line = await self.readline()
            if line is None:
                raise Disconnect()
            response = line.rstrip(b"\r\n").decode("ascii", "replace")
        if response == "*":
            raise bad("Authentication cancelled")
        try:
            decoded = base64.b64decode(response, validate=True)
            authzid, authcid, password = decoded.split(b"\0")
            user = authcid.decode("utf-8")
            pw = password.decode("utf-8")
            if authzid and authzid.decode("utf-8") != user:
                raise no("[AUTHORIZATIONFAILED] Logging in as another user is not allowed")
        except CommandError:
            raise
        except ValueError:
            raise bad("Invalid SASL PLAIN response (want base64 of authzid NUL user NUL password)") from None
        return await self.login(user, pw)
    cmd_AUTHENTICATE.state = "noauth"

    async def cmd_STARTTLS(self, tag, args):
        if self.tls_active:
            raise bad("TLS is already active")
        if self.tls_mode != "starttls":
            raise bad("STARTTLS is not offered on this port")
        ctx = self.runtime.ssl_context()
        await self.send(f"{tag} OK Begin TLS negotiation now\r\n".encode())
        # NO STARTTLS (USENIX Security '21): anything pipelined after STARTTLS in plaintext
        # must not be executed inside TLS.
        buffered = getattr(self.reader, "_buffer", None)
        if buffered:
            buffered.clear()
        try:
            await self.writer.start_tls(ctx)
        except (OSError, ConnectionError) as e:   # ssl.SSLError is an OSError: a client error
            self.runtime.log.info("imap: %s: TLS handshake failed: %s", self.peer_ip, e)
            raise Disconnect() from e
        self.tls_active = True
        return None
    cmd_STARTTLS.state = "noauth"


    async def cmd_COMPRESS(self, tag, args):
        """RFC 4978: after our OK both directions are raw DEFLATE (engine/deflatestream.py)."""
        if len(args) != 1:
            raise bad("COMPRESS needs a mechanism")
        if deflatestream.is_compressed(self.writer):
            raise no("[COMPRESSIONACTIVE] DEFLATE is already active")
        if as_text(args[0], "mechanism").upper() != "DEFLATE":
            raise bad("Unknown compression mechanism (DEFLATE is the one)")
        await self.send(f"{tag} OK DEFLATE active\r\n".encode())
        self.reader, self.writer = deflatestream.wrap(self.reader, self.writer, MAX_LINE + 2)
        return None
    cmd_COMPRESS.state = "auth"


_NO_ARGUMENTS = {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "IDLE", "CHECK", "CLOSE", "UNSELECT",
                 "EXPUNGE", "NAMESPACE"}
# IMAP's words at each turn of a connection (engine.connection runs it).
IMAP = connection.Protocol(
    name="imap", refusal="* BYE {}\r\n",
    refusals={connlimits.BANNED: "Your address is temporarily banned after failed logins",
              connlimits.FULL: "[UNAVAILABLE] Too many connections, try again later",
              connlimits.ADDRESS_FULL: "[UNAVAILABLE] Too many connections from your address"},
    autologout=b"* BYE Autologout; idle for too long\r\n", busy=overload.BUSY_IMAP,
    internal_error=b"* BYE Internal error, closing the connection\r\n",
    shutting_down=b"* BYE Server shutting down\r\n", hangups=(Disconnect,))
_PREAUTH_LITERALS = {"LOGIN", "AUTHENTICATE", "ID"}
# Commands after which other sessions' changes are not announced: RFC 3501 §7.4.1
# forbids EXPUNGE during FETCH, STORE and SEARCH; the rest (and the UID commands,
# before they run) announce on their own. After one that found a message
# gone, dispatch announces what it may (see _BY_SEQUENCE).
_NO_UPDATES = {"UID", "FETCH", "STORE", "SEARCH", "SORT", "THREAD", "SELECT", "EXAMINE", "NOOP", "CHECK", "IDLE", "LOGOUT", "APPEND"}
# No EXPUNGE while answering these (RFC 3501 §7.4.1): the client's sequence numbers must
# hold; their UID forms (command name UID) may send it.
_BY_SEQUENCE = {"FETCH", "STORE", "SEARCH", "SORT", "THREAD"}


def _tag_of(line: bytes) -> str | None:
    head = line.split(b" ", 1)[0].strip()
    try:
        tag = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    return tag if _valid_tag(tag) else None


def _command_of(line: bytes) -> str:
    parts = line.split(b" ", 3)
    if len(parts) < 2:
        return ""
    cmd = parts[1].strip().upper()
    if cmd == b"UID" and len(parts) > 2:
        cmd = parts[2].strip().upper()
    return cmd.decode("ascii", "replace")


# A tag: 1 to 64 printable ASCII characters, none of (){%*"\+ (checked for every command).
_TAG = re.compile(r"[!#$&',-\[\]-z|}~]{1,64}", re.ASCII)


def _valid_tag(tag: str) -> bool:
    return _TAG.fullmatch(tag) is not None


def _cannot_store(e: OSError) -> str:
    return storage_errors.imap_text(e) or f"[UNAVAILABLE] {overload.TRY_LATER}"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
