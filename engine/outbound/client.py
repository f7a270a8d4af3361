"""A small asyncio SMTP client for outbound delivery (RFC 5321, 3207, 4954, 2920).

One object is one connection; it can carry several transactions (connection reuse).
MAIL, RCPT and DATA are pipelined when the server offers PIPELINING.
"""
from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from dataclasses import dataclass, field

MAX_REPLY_LINES = 1000          # a hostile server must not stream one reply forever
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass
class Reply:
    code: int
    text: str                 # all lines joined by a space, without the codes
    lines: list = field(default_factory=list)

    @property
    def enhanced(self) -> str:
        m = _ENHANCED.match(self.text)
        if m:
            return ".".join(m.groups())
        return f"{self.code // 100}.0.0" if self.code >= 200 else "4.4.0"

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()

    @property
    def temporary(self) -> bool:
        return self.code < 500 and not 200 <= self.code < 400


class SMTPError(Exception):
    """The connection failed or the server said no at a point where the whole transaction fails."""

    def __init__(self, reply: Reply, stage: str):
        super().__init__(f"{stage}: {reply}")
        self.reply, self.stage = reply, stage


def to_wire(data: bytes) -> bytes:
    """CRLF line ends, dot-stuffed, ending with CRLF.CRLF."""
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    return data + b".\r\n"


def unverified_context() -> ssl.SSLContext:
    """Opportunistic TLS: encrypt, but accept any certificate (as Postfix 'may' does)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def verified_context(ca_file: str = "") -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file or None)


@dataclass
class Connection:
    host: str                           # name the server is known by (MX name)
    ip: str
    port: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    timeout: float
    features: dict = field(default_factory=dict)
    tls: bool = False
    banner: str = ""
    transactions: int = 0

    @classmethod
    async def open(cls, host: str, ip: str, port: int, *, timeout: float = 30.0,
                   command_timeout: float = 300.0, source_address: str = "",
                   implicit_tls: ssl.SSLContext | None = None) -> "Connection":
        local = (source_address, 0) if source_address else None
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            ip, port, family=fam, local_addr=local, ssl=implicit_tls,
            server_hostname=host if implicit_tls else None, limit=1 << 16), timeout)
        conn = cls(host, ip, port, reader, writer, command_timeout, tls=implicit_tls is not None)
        greeting = await conn.read_reply()
        conn.banner = greeting.text
        if greeting.code != 220:
            await conn.close()
            raise SMTPError(greeting, "greeting")
        return conn

    # -- wire -------------------------------------------------------------
    async def read_reply(self) -> Reply:
        lines = []
        code = 0
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    raw = await self.reader.readline()
            except (asyncio.LimitOverrunError, ValueError):
                raise SMTPError(Reply(421, "4.4.2 reply line too long"), "reply") from None
            except asyncio.TimeoutError:
                raise SMTPError(Reply(421, "4.4.2 timeout waiting for the server's reply"), "reply") from None
            if not raw:
                raise SMTPError(Reply(421, "4.4.2 connection closed by the server"), "reply")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit():
                raise SMTPError(Reply(421, f"4.5.0 malformed reply: {line[:80]!r}"), "reply")
            code = int(line[:3])
            lines.append(line[4:])
            if len(lines) > MAX_REPLY_LINES:
                raise SMTPError(Reply(421, f"4.5.0 reply of more than {MAX_REPLY_LINES} lines"), "reply")
            if len(line) < 4 or line[3] != "-":
                return Reply(code, " ".join(x.strip() for x in lines).strip(), lines)

    async def send(self, line: str) -> None:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()

    async def command(self, line: str) -> Reply:
        await self.send(line)
        return await self.read_reply()

    # -- session ----------------------------------------------------------
    async def ehlo(self, name: str) -> None:
        reply = await self.command(f"EHLO {name}")
        if reply.code != 250:
            reply = await self.command(f"HELO {name}")
            if reply.code != 250:
                raise SMTPError(reply, "HELO")
            self.features = {}
            return
        feats = {}
        for part in reply.lines[1:]:
            word, _, arg = part.strip().partition(" ")
            feats[word.upper()] = arg
        self.features = feats

    async def starttls(self, context: ssl.SSLContext, ehlo_name: str) -> None:
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            raise SMTPError(reply, "STARTTLS")
        async with asyncio.timeout(self.timeout):
            await self.writer.start_tls(context, server_hostname=self.host)
        self.tls = True
        await self.ehlo(ehlo_name)

    async def auth(self, username: str, password: str) -> None:
        mechs = self.features.get("AUTH", "").upper().split()
        if "PLAIN" in mechs or not mechs:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            reply = await self.command(f"AUTH PLAIN {token}")
        elif "LOGIN" in mechs:
            reply = await self.command("AUTH LOGIN")
            if reply.code == 334:
                reply = await self.command(base64.b64encode(username.encode()).decode())
            if reply.code == 334:
                reply = await self.command(base64.b64encode(password.encode()).decode())
        else:
            raise SMTPError(Reply(530, f"5.7.0 no supported AUTH mechanism (server offers {' '.join(mechs)})"), "AUTH")
        if reply.code != 235:
            raise SMTPError(reply, "AUTH")

    async def transaction(self, sender: str, recipients: list[str], wire: bytes,
                          eightbit: bool = False) -> tuple[dict[str, Reply], Reply | None]:
        """One mail transaction. Returns (reply per recipient, DATA reply or None).

        Raises SMTPError when MAIL FROM is refused (the whole transaction fails)."""
        params = ""
        if "SIZE" in self.features:
            params += f" SIZE={len(wire)}"
        if eightbit and "8BITMIME" in self.features:
            params += " BODY=8BITMIME"
        if (not sender.isascii() or not all(r.isascii() for r in recipients)) and "SMTPUTF8" in self.features:
            params += " SMTPUTF8"
        lines = [f"MAIL FROM:<{sender}>{params}"] + [f"RCPT TO:<{r}>" for r in recipients]
        if "PIPELINING" in self.features:
            # RFC 2920: MAIL, every RCPT and DATA in one packet; DATA's reply comes last
            self.writer.write("".join(x + "\r\n" for x in lines + ["DATA"]).encode("utf-8"))
            await self.writer.drain()
            replies = [await self.read_reply() for _ in lines]
            data_reply = await self.read_reply()
            mail = replies[0]
            per = dict(zip(recipients, replies[1:]))
            accepted = mail.code == 250 and any(r.code in (250, 251) for r in per.values())
            if data_reply.code == 354 and not accepted:
                # the server wants a message nobody will get: end it empty, then reset
                self.writer.write(b".\r\n")
                await self.writer.drain()
                await self.read_reply()
            if mail.code != 250:
                await self._reset()
                raise SMTPError(mail, "MAIL FROM")
            if not accepted:
                await self._reset()
                return per, None
            if data_reply.code != 354:
                await self._reset()
                return per, data_reply
        else:
            replies = []
            for x in lines:
                replies.append(await self.command(x))
                if len(replies) == 1 and replies[0].code != 250:
                    await self._reset()
                    raise SMTPError(replies[0], "MAIL FROM")
            per = dict(zip(recipients, replies[1:]))
            if not any(r.code in (250, 251) for r in per.values()):
                await self._reset()
                return per, None
            reply = await self.command("DATA")
            if reply.code != 354:
                await self._reset()
                return per, reply
        self.writer.write(wire)
        await self.writer.drain()
        final = await self.read_reply()
        self.transactions += 1
        return per, final

    async def _reset(self) -> None:
        reply = await self.command("RSET")
        if reply.code != 250:
            raise SMTPError(reply, "RSET")

    async def quit(self) -> None:
        try:
            await asyncio.wait_for(self.command("QUIT"), 5)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        await self.close()

    async def close(self) -> None:
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except Exception:  # noqa: BLE001 - closing a dead connection may fail any way; it is gone
            pass

    @property
    def closed(self) -> bool:
        return self.writer.is_closing() or self.reader.at_eof()
