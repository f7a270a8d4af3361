"""One ManageSieve session (RFC 5804): a user's Sieve scripts managed over the network, as
Dovecot's Pigeonhole serves them on port 4190 (Thunderbird's and Roundcube's Sieve editors,
sieve-connect). The scripts are engine/sieve/scripts.py's: the same files `mailctl` and
delivery use, in Pigeonhole's layout.

Commands: CAPABILITY, STARTTLS, AUTHENTICATE PLAIN, LOGOUT, NOOP; once logged in
HAVESPACE, PUTSCRIPT, CHECKSCRIPT, LISTSCRIPTS, SETACTIVE, GETSCRIPT, DELETESCRIPT,
RENAMESCRIPT. A script is checked before it is stored (NO with "line N: ..." otherwise).
engine.connection runs the connection (limits, greeting, reading, close).
"""
from __future__ import annotations

import asyncio
import base64

from .. import connection, connlimits, overload, storage_errors
from ..errors import InvalidInput, MailError, NotFound, client_text
from ..maildir import Maildir
from ..sieve import scripts
from ..sieve.check import EXTENSIONS
from ..sieve.interp import Script
from ..sieve.lexer import MAX_SCRIPT, SieveError
from .words import BadCommand, TooBig, read_command, string

MAX_SCRIPTS = 100              # per account (Pigeonhole's sieve_quota_max_scripts; 0 there is none)
MAX_BAD_COMMANDS = 20
INTERNAL_ERROR = "Internal error, try again later"     # the detail is in the server's log


class _Bye(Exception):
    pass


# ManageSieve's words at each turn of a connection (engine.connection runs it).
MANAGESIEVE = connection.Protocol(
    name="managesieve", refusal='BYE "{}"\r\n',
    refusals={connlimits.BANNED: "Your address is temporarily banned after failed logins",
              connlimits.FULL: "Too many connections, try again later",
              connlimits.ADDRESS_FULL: "Too many connections from your address"},
    autologout=b'BYE "Disconnected for inactivity."\r\n', busy=overload.BUSY_MANAGESIEVE,
    internal_error=b'BYE "Internal error, closing the connection"\r\n',
    shutting_down=b'BYE "Server shutting down."\r\n', hangups=(_Bye,))


def _reply(word: str, text: str, code: str = "") -> bytes:
    return f"{word} {'(' + code + ') ' if code else ''}".encode() + string(text) + b"\r\n"


class SieveSession(connection.Connection):
    def __init__(self, runtime, listener: str, reader, writer, tls_mode: str):
        super().__init__(runtime, reader, writer, tls_mode)
        self.home = None                        # the account's Maildir: where its scripts live
        self.bad = 0

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def run(self) -> None:
        await connection.serve(self, MANAGESIEVE)

    def capabilities(self) -> bytes:
        lines = [b'"IMPLEMENTATION" "mailctl"', b'"SIEVE" ' + string(" ".join(sorted(EXTENSIONS)))]
        if self.account is None and self.plaintext_ok:
            lines.append(b'"SASL" "PLAIN"')
        elif self.account is None:
            lines.append(b'"SASL" ""')
        if self.tls_mode == "starttls" and not self.tls_active:
            lines.append(b'"STARTTLS"')
        lines += [b'"MAXREDIRECTS" "%d"' % 4, b'"VERSION" "1.0"']
        return b"\r\n".join(lines) + b"\r\n"

    def greeting(self) -> bytes:
        return self.capabilities() + b'OK "mailctl ManageSieve ready."\r\n'

    async def read_request(self):
        try:
            return await read_command(self._readline, self.reader.readexactly)
        except BadCommand as e:
            return e
        except TooBig as e:
            await self.send(_reply("BYE", f"{str(e).capitalize()}."))
            raise _Bye() from None
        except asyncio.IncompleteReadError:
            return None

    async def _readline(self) -> bytes:
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise TooBig("line too long") from None
        except asyncio.IncompleteReadError as e:
            return e.partial if e.partial.endswith(b"\n") else b""

    async def handle(self, request) -> bool:
        if isinstance(request, BadCommand):
            await self.refuse(str(request))
            return True
        handler = getattr(self, "cmd_" + request.name, None) if request.name.isalpha() else None
        if handler is None:
            await self.refuse(f"Unknown command {request.name[:20]}")
            return True
        if getattr(handler, "auth", None) is True and self.account is None:
            await self.refuse("Log in first (AUTHENTICATE)")
            return True
        if getattr(handler, "auth", None) is False and self.account is not None:
            await self.refuse("Not allowed after login")
            return True
        try:
            return await handler(request.args) is not False
        except ConnectionError:
            raise
        except BadCommand as e:
            await self.refuse(str(e))
        except OSError as e:   # before MailError: a StorageError is both
            await self.send(_reply("NO", self._storage_reply(e), "TRYLATER"))
        except SieveError as e:
            await self.send(_reply("NO", str(e)))
        except NotFound as e:
            await self.send(_reply("NO", client_text(e, INTERNAL_ERROR), "NONEXISTENT"))
        except MailError as e:
            await self.send(_reply("NO", client_text(e, INTERNAL_ERROR)))
        return True

    def _storage_reply(self, e: OSError) -> str:
        if overload.out_of_fds(e):
            self.runtime.log.warning("managesieve: %s: out of file descriptors", self.peer_ip)
            return overload.TRY_LATER
        text = storage_errors.reason(e)
        who = self.account.address if self.account else self.peer_ip
        if text is not None:
            self.runtime.log.warning("managesieve: %s: %s", who, storage_errors.as_storage_error(e))
            return text
        self.runtime.log.error("managesieve: %s: I/O error: %s", who, e)
        return INTERNAL_ERROR

    async def refuse(self, text: str) -> None:
        await self.send(_reply("NO", text))
        self.bad += 1
        if self.bad >= MAX_BAD_COMMANDS:
            await self.send(_reply("BYE", "Too many invalid commands."))
            raise _Bye()

    async def ok(self, text: str, code: str = "") -> None:
        await self.send(_reply("OK", text, code))

    async def blocking(self, fn, *args):
        return await self.runtime.run_blocking(fn, *args)

    @staticmethod
    def _args(args: list, n: int, usage: str) -> list:
        if len(args) != n:
            raise BadCommand(f"usage: {usage}")
        return args

    # -- any state ---------------------------------------------------------------------
    async def cmd_CAPABILITY(self, args):
        await self.send(self.capabilities())
        await self.ok("Capability completed.")

    async def cmd_NOOP(self, args):
        if len(args) > 1:
            raise BadCommand("usage: NOOP [tag]")
        code = "TAG " + string(args[0]).decode() if args else ""
        await self.ok("NOOP completed.", code)

    async def cmd_LOGOUT(self, args):
        await self.ok("Logout completed.")
        return False

    # -- before login ------------------------------------------------------------------
    async def cmd_STARTTLS(self, args):
        if self.tls_active or self.tls_mode != "starttls":
            await self.refuse("TLS is already active or not offered here")
            return
        await self.ok("Begin TLS negotiation now.")
        try:
            await self.writer.start_tls(self.runtime.ssl_context())
        except (OSError, ConnectionError) as e:   # ssl.SSLError is an OSError: a client error
            self.runtime.log.info("managesieve: %s: TLS handshake failed: %s", self.peer_ip, e)
            raise _Bye() from None
        self.tls_active = True
        await self.send(self.capabilities() + b'OK "TLS negotiation successful."\r\n')    # RFC 5804 §2.2
    cmd_STARTTLS.auth = False

    async def cmd_AUTHENTICATE(self, args):
        if not args or len(args) > 2:
            raise BadCommand('usage: AUTHENTICATE "PLAIN" ["response"]')
        if args[0].upper() != "PLAIN":
            await self.refuse(f"Unsupported mechanism {args[0][:20]}")
            return
        if not self.plaintext_ok:
            await self.send(_reply("NO", "Use STARTTLS before logging in", "ENCRYPT-NEEDED"))
            return
        response = args[1] if len(args) == 2 else await self._continuation()
        if response == "*":
            await self.send(_reply("NO", "Authentication cancelled."))
            return
        try:
            authzid, authcid, password = base64.b64decode(response, validate=True).split(b"\0")
            user, pw = authcid.decode("utf-8"), password.decode("utf-8")
        except ValueError:
            await self.refuse("Invalid SASL PLAIN response")
            return
        if authzid and authzid.decode("utf-8", "replace") != user:
            await self.send(_reply("NO", "Logging in as another user is not allowed", "AUTHZ-FAILED"))
            return
        await self.login(user, pw)
    cmd_AUTHENTICATE.auth = False

    async def _continuation(self) -> str:
        await self.send(b'""\r\n')
        line = await self._readline()
        if not line:
            raise _Bye()
        text = line.rstrip(b"\r\n").decode("ascii", "replace")
        return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text

    async def login(self, user: str, password: str) -> None:
        rt = self.runtime
        account = await rt.authenticate(user, password, self.peer_ip, "managesieve")
        if account is None:
            if rt.bans.is_banned(self.peer_ip):
                await self.send(_reply("BYE", "Your address is temporarily banned."))
                raise _Bye()
            await self.send(_reply("NO", "Authentication failed."))
            return
        too_many = connlimits.user_ip_full(rt, account.address, self.peer_ip)
        if too_many:
            await self.send(_reply("NO", too_many, "TRYLATER"))
            return
        md = Maildir.for_account(rt.root, account.domain, account.local)
        if not await self.blocking(md.exists):
            await self.blocking(md.create)
        self.account, self.home = account, md.path
        self.session.user = account.address
        rt.log.info("managesieve: %s logged in from %s", account.address, self.peer_ip)
        await self.ok("Logged in.")

    # -- logged in ---------------------------------------------------------------------
    async def cmd_LISTSCRIPTS(self, args):
        self._args(args, 0, "LISTSCRIPTS")
        listed = await self.blocking(scripts.list_scripts, self.home)
        await self.send(b"".join(string(name) + (b" ACTIVE" if active else b"") + b"\r\n" for name, active in listed))
        await self.ok("Listscripts completed.")
    cmd_LISTSCRIPTS.auth = True

    async def cmd_GETSCRIPT(self, args):
        name, = self._args(args, 1, "GETSCRIPT name")
        text = await self.blocking(scripts.read_script, self.home, scripts.check_name(name))
        raw = text.encode("utf-8")
        await self.send(b"{%d}\r\n" % len(raw) + raw + b"\r\n")
        await self.ok("Getscript completed.")
    cmd_GETSCRIPT.auth = True

    async def cmd_HAVESPACE(self, args):
        name, size = self._args(args, 2, "HAVESPACE name size")
        if not size.isdigit():
            raise BadCommand("the size is a number")
        problem = await self.blocking(self._no_room, scripts.check_name(name), int(size))
        if problem:
            await self.send(_reply("NO", *problem))
            return
        await self.ok("Putscript would succeed.")
    cmd_HAVESPACE.auth = True

    def _no_room(self, name: str, size: int) -> tuple[str, str] | None:
        """(text, code) when a script of this size may not be stored under name."""
        if size > MAX_SCRIPT:
            return f"Script is too large (max {MAX_SCRIPT} bytes).", "QUOTA/MAXSIZE"
        names = [n for n, _ in scripts.list_scripts(self.home)]
        if name not in names and len(names) >= MAX_SCRIPTS:
            return f"Too many scripts (max {MAX_SCRIPTS}).", "QUOTA/MAXSCRIPTS"
        return None

    async def cmd_PUTSCRIPT(self, args):
        name, text = self._args(args, 2, "PUTSCRIPT name {size+}")
        name = scripts.check_name(name)
        problem = await self.blocking(self._no_room, name, len(text.encode("utf-8")))
        if problem:
            await self.send(_reply("NO", *problem))
            return
        await self.blocking(self._linked, text)
        await self.blocking(scripts.put_script, self.home, name, text)
        self.runtime.log.info("managesieve: %s: stored script %r", self.account.address, name)
        await self.ok("Putscript completed.")
    cmd_PUTSCRIPT.auth = True

    def _linked(self, text: str) -> None:
        """The script compiles and its includes resolve (as Pigeonhole checks at upload)."""
        Script(text).link(scripts.include_loader(self.home, self.runtime.root.path))

    async def cmd_CHECKSCRIPT(self, args):
        text, = self._args(args, 1, "CHECKSCRIPT {size+}")
        if len(text.encode("utf-8")) > MAX_SCRIPT:
            await self.send(_reply("NO", f"Script is too large (max {MAX_SCRIPT} bytes).", "QUOTA/MAXSIZE"))
            return
        await self.blocking(self._linked, text)
        await self.ok("Script is valid.")
    cmd_CHECKSCRIPT.auth = True

    async def cmd_SETACTIVE(self, args):
        name, = self._args(args, 1, "SETACTIVE name")
        await self.blocking(scripts.activate, self.home, scripts.check_name(name) if name else None)
        await self.ok("Setactive completed.")
    cmd_SETACTIVE.auth = True

    async def cmd_DELETESCRIPT(self, args):
        name, = self._args(args, 1, "DELETESCRIPT name")
        name = scripts.check_name(name)
        if await self.blocking(scripts.active_name, self.home) == name:
            await self.send(_reply("NO", "You may not delete an active script.", "ACTIVE"))
            return
        await self.blocking(scripts.delete_script, self.home, name)
        await self.ok("Deletescript completed.")
    cmd_DELETESCRIPT.auth = True

    async def cmd_RENAMESCRIPT(self, args):
        old, new = self._args(args, 2, "RENAMESCRIPT old new")
        old, new = scripts.check_name(old), scripts.check_name(new)
        try:
            await self.blocking(scripts.rename_script, self.home, old, new)
        except InvalidInput as e:
            if "exists" not in str(e):
                raise
            await self.send(_reply("NO", f"A script named {new} exists already.", "ALREADYEXISTS"))
            return
        await self.ok("Renamescript completed.")
    cmd_RENAMESCRIPT.auth = True
