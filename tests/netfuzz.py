"""A bounded network fuzzer: generated SMTP, IMAP and POP3 sessions against a real
`mailctl serve`, judged from outside.

A finding is any of:
- a reply slower than the limit (2 s by default), or a greeting that does not come;
- a connection closed without the protocol's goodbye (SMTP 221/421/554, IMAP `* BYE`,
  POP3 a reply to QUIT or an -ERR);
- a message acknowledged (SMTP 250, IMAP APPEND OK) that is not in the mailbox exactly
  once per accepted recipient, or one refused that is there anyway (split, doubled, lost);
- a "Traceback" in log/mailctl.log;
- a server path in any reply.

Sessions mix valid commands (so the fuzzer gets deep into each protocol) with mutated
and hostile ones: garbage bytes, over-long lines, NUL, numbers past any range, huge
literals, odd patterns and charsets. Every run is reproducible from its seed. Each
session comes from its own loopback address (127.x.y.z), so per-address limits and bans
meet it as they would meet many clients.

    stats = Fuzzer(ports, root, seed=1).run(seconds=60)      # tests: a short seeded run
    python bench/fuzz.py --minutes 30                        # a long run, with RSS figures
"""
from __future__ import annotations

import base64
import random
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import MailError

USERS = ("fuzz1@example.com", "fuzz2@example.com")
IMAP_USER = USERS[0]                       # IMAP copies, moves and appends only here, so...
EXACT_USER = USERS[1]                      # ...mail to this one must be there exactly once
POP_USER = "fuzzpop@example.com"          # POP3 deletes: kept apart from the tracked mail
PASSWORD = "fuzz-pass-123"
# the fuzzed root's settings: a quarter of the sources (127.0-63.y.z) in relay.trusted_networks,
# so messages with bare LF are mended for some clients and refused from the others
SETTINGS = {"auth.allow_plaintext": True, "relay.trusted_networks": ["127.0.0.0/10"]}
REPLY_LIMIT_S = 2.0
# A login's reply waits for the password hash (argon2id: a second on a busy two-core
# machine, where failed logins were slower than 2 s) and, when it fails, the failure delay.
LOGIN_EXTRA_S = 8.0

GARBAGE = [b"\x00\x01\x02", b"\xff\xfe\xfd", "é中\u2028".encode(), b"%s%n%x", b"\x1b[2J",
           b"()" * 50, b"{", b"}", b"\"", b"\\", b"*" * 30, b"%" * 30, b"9" * 5000, b"-1",
           b"4294967296", b"\r", b"\t\t", b"A" * 70_000]
HOSTILE_NUMBERS = ["0", "1", "2", "*", "4294967295", "4294967296", "9" * 5000, "²", "1:*", "*:1",
                   "1,2,3", "3:1", "-1", "1.5", ""]
# COPY and MOVE sets: never the whole folder, so its size grows at most linearly (a
# COPY 1:* INBOX doubles INBOX: after 12 minutes every FETCH 1:* and SEARCH was slow)
FEW_NUMBERS = [n for n in HOSTILE_NUMBERS if n not in ("1:*", "*:1")]
CHARSETS = ["utf-8", "us-ascii", "iso-8859-1", "idna", "undefined", "punycode", "utf-7",
            "x-unknown", "utf-8\0x", "", "cp1252", "utf-16", "rot13", "base64"]


@dataclass
class Stats:
    sessions: dict = field(default_factory=lambda: {"smtp": 0, "imap": 0, "pop3": 0, "managesieve": 0})
    commands: dict = field(default_factory=lambda: {"smtp": 0, "imap": 0, "pop3": 0, "managesieve": 0})
    messages: int = 0
    findings: list = field(default_factory=list)

    def find(self, what: str) -> None:
        if len(self.findings) < 200:
            self.findings.append(time.strftime("%H:%M:%S ") + what)


class Closed(Exception):
    pass


class TimedOut(Closed):
    """No reply in time: a finding already, not also a close without a goodbye."""


class Conn:
    """A line-oriented client with a reply deadline; records what it saw last."""

    def __init__(self, port: int, source: str, stats: Stats, proto: str, root_path: str):
        self.stats, self.proto, self.root_path = stats, proto, root_path
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.lines: list[bytes] = []
        self.sent = b""                        # the last command, for findings

    def send(self, data: bytes) -> None:
        self.sent = data[:100]
        try:
            self.sock.sendall(data)
        except OSError:
            raise Closed() from None
        self.stats.commands[self.proto] += 1

    def line(self, limit: float = REPLY_LIMIT_S, what: str = "") -> bytes:
        deadline = time.monotonic() + limit
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stats.find(f"{self.proto}: no reply within {limit:g} s to {what[:80]!r}")
                raise TimedOut()
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                raise Closed()
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        self.lines.append(line)
        if self.root_path.encode() in line:
            self.stats.find(f"{self.proto}: a server path in a reply: {line[:120]!r}")
        return line

    def take(self, n: int, limit: float = REPLY_LIMIT_S) -> bytes:
        """Exactly n octets (a literal), within limit."""
        deadline = time.monotonic() + limit
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stats.find(f"{self.proto}: a literal of {n} octets not sent within {limit:g} s")
                raise TimedOut()
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                raise Closed()
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def close(self) -> None:
        self.sock.close()


def message(rng: random.Random, token: str) -> bytes:
    """A small MIME message, sometimes malformed, carrying token once in its headers."""
    charset = rng.choice(CHARSETS)
    kind = rng.random()
    head = (f"From: <sender@example.org>\r\nTo: <{USERS[0]}>\r\nSubject: fuzz {token}\r\n"
            f"Message-ID: <{token}@fuzz>\r\nMIME-Version: 1.0\r\n")
    if kind < 0.4:
        return (head + f"Content-Type: text/plain; charset=\"{charset}\"\r\n\r\n"
                f"body text {rng.randint(0, 10**6)} caf\xe9\r\n").encode("utf-8", "surrogateescape")
    if kind < 0.7:
        depth = rng.randint(1, 60)
        inner = b"Content-Type: text/plain\r\n\r\ninner\r\n"
        for _ in range(depth):
            inner = b"Content-Type: message/rfc822\r\n\r\n" + inner
        return head.encode() + inner
    boundary = "b" + str(rng.randint(0, 9999))
    parts = []
    for _ in range(rng.randint(0, 5)):
        parts.append(f"--{boundary}\r\nContent-Type: {rng.choice(['text/html', 'text/plain', 'image/png', 'x/y'])};"
                     f" charset={charset}\r\nContent-Transfer-Encoding: "
                     f"{rng.choice(['base64', 'quoted-printable', '7bit', 'x-uu', 'bogus'])}\r\n\r\n"
                     f"{rng.choice(['aGVsbG8=', '=E9=', '!!!', 'plain'])}\r\n")
    end = f"--{boundary}--\r\n" if rng.random() < 0.7 else ""
    return (head + f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
            + "".join(parts) + end).encode("utf-8", "surrogateescape")


SIEVE_SCRIPTS = ["keep;", 'require "fileinto"; fileinto "x";', "discard;", "if true { keep; }", "keep",
                 'require ["variables"]; set "a" "${a}${a}";', "if " * 40, "\u00e9\x00\x7f", "# c\r\nkeep;\r\n"]


def _sieve_string(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogateescape")
    return b'"' + raw + b'"' if b'"' not in raw and b"\\" not in raw and b"\n" not in raw else b"{%d+}\r\n" % len(raw) + raw


class Fuzzer:
    def __init__(self, ports: dict, root, seed: int = 1, reply_limit: float = REPLY_LIMIT_S):
        self.ports = ports
        self.root = root
        self.rng = random.Random(seed)
        self.stats = Stats()
        self.limit = reply_limit
        self.accepted: dict[str, dict] = {}      # token -> {account: copies (exact) or 1 (at least)}
        self.refused: set[str] = set()
        self.n = 0

    def source(self) -> str:
        return f"127.{self.rng.randint(1, 250)}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"

    def token(self) -> str:
        self.n += 1
        return f"fz{self.n:07d}x{self.rng.randint(0, 1 << 30):x}"

    def run(self, seconds: float, smtp: int | None = None, imap: int | None = None,
            pop3: int | None = None, managesieve: int | None = None) -> Stats:
        """Sessions at random until the time is up or every given count is reached."""
        end = time.monotonic() + seconds
        want = {"smtp": smtp, "imap": imap, "pop3": pop3, "managesieve": managesieve}
        kinds = [k for k, v in want.items() if v is None or v > 0]
        while kinds and time.monotonic() < end:
            kind = self.rng.choice(kinds)
            self.stats.sessions[kind] += 1
            try:
                getattr(self, f"_{kind}")()
            except Closed:
                pass
            except OSError as e:
                self.stats.find(f"{kind}: connection failed: {e}")
            if want[kind] is not None and self.stats.sessions[kind] >= want[kind]:
                kinds.remove(kind)
        return self.stats

    # -- SMTP --
    def _smtp(self) -> None:
        rng = self.rng
        c = Conn(self.ports["smtp"], self.source(), self.stats, "smtp", str(self.root.path))
        try:
            greeting = c.line(self.limit + 8, "greeting")      # a pregreet wait comes first
            if not greeting.startswith(b"220"):
                if greeting[:3] not in (b"421", b"554"):
                    self.stats.find(f"smtp: odd greeting {greeting[:80]!r}")
                return
            rcpts: list[str] = []
            for _ in range(rng.randint(1, 12)):
                step = rng.random()
                if step < 0.12:
                    cmd = rng.choice([b"EHLO fuzz.example", b"HELO fuzz.example", b"EHLO [127.0.0.1]",
                                      b"EHLO [999.1.1.1]", b"EHLO", b"EHLO " + rng.choice(GARBAGE)])
                    reply = self._smtp_cmd(c, cmd)
                elif step < 0.25:
                    rcpts = []
                    sender = rng.choice([b"<sender@example.org>", b"<>", b"<a@b> SIZE=100", b"<x@y> SIZE=" +
                                         rng.choice(HOSTILE_NUMBERS).encode(), b"<" + rng.choice(GARBAGE)[:200] + b">",
                                         b"sender@example.org", b"<a@b> BODY=8BITMIME SMTPUTF8"])
                    reply = self._smtp_cmd(c, b"MAIL FROM:" + sender)
                elif step < 0.45:
                    who = rng.choice(list(USERS) + ["nobody@example.com", "x@elsewhere.test", "\"a b\"@example.com",
                                                    "<@route:x@example.com>", "a" * 300 + "@example.com"])
                    reply = self._smtp_cmd(c, f"RCPT TO:<{who}>".encode("utf-8", "surrogateescape"))
                    if reply.startswith(b"250") and who in USERS and who not in rcpts:
                        rcpts.append(who)
                elif step < 0.6:
                    self._smtp_data(c, rcpts)
                    rcpts = []
                elif step < 0.7:
                    reply = self._smtp_cmd(c, rng.choice([b"RSET", b"NOOP", b"VRFY fuzz1", b"EXPN x", b"HELP"]))
                    rcpts = [] if reply.startswith(b"250") else rcpts
                elif step < 0.8:
                    auth = base64.b64encode(rng.choice([b"\0a\0b", b"x" * 4000, b"\0\0"]))
                    self._smtp_cmd(c, b"AUTH PLAIN " + auth, self.limit + LOGIN_EXTRA_S)
                else:
                    self._smtp_cmd(c, rng.choice(GARBAGE))
                    rcpts = []
                if c.lines and c.lines[-1][:3] in (b"421", b"221"):
                    return
            self._smtp_cmd(c, b"QUIT")
            if not c.lines[-1].startswith((b"221", b"421")):
                self.stats.find(f"smtp: QUIT answered {c.lines[-1][:80]!r}")
        except TimedOut:
            pass
        except Closed:
            last = c.lines[-1] if c.lines else b""
            if last[:3] not in (b"221", b"421", b"554") and not (c.lines and c.lines[-1].startswith(b"5")):
                self.stats.find(f"smtp: closed without a goodbye after {last[:80]!r}, on {c.sent!r}")
        finally:
            c.close()

    def _smtp_cmd(self, c: Conn, cmd: bytes, limit: float | None = None) -> bytes:
        c.send(cmd + b"\r\n")
        while True:
            line = c.line(limit or self.limit, cmd.decode("latin-1"))
            if line[3:4] != b"-":
                return line

    def _smtp_data(self, c: Conn, rcpts: list[str]) -> None:
        reply = self._smtp_cmd(c, b"DATA")
        if not reply.startswith(b"354"):
            return
        token = self.token()
        body = message(self.rng, token)
        chance = self.rng.random()
        if chance < 0.1:
            body += b"\n.\nRSET\n"                          # a smuggling attempt: bare-LF end of data
        elif chance < 0.2:
            body = body.replace(b"\r\n", b"\n")            # a Unix script's message: bare LF only
        c.send(body.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        reply = c.line(self.limit + 5, "end of DATA")
        while reply[3:4] == b"-":
            reply = c.line(self.limit, "end of DATA")
        self.stats.messages += 1
        if reply.startswith(b"250"):
            self.accepted[token] = {who: 1 for who in rcpts}
        else:
            self.refused.add(token)

    # -- IMAP --
    def _imap(self) -> None:
        rng = self.rng
        c = Conn(self.ports["imap"], self.source(), self.stats, "imap", str(self.root.path))
        tag = 0
        saw_bye = False

        def cmd(text: bytes, literal: bytes | None = None) -> bytes:
            nonlocal tag, saw_bye
            tag += 1
            t = b"f%d" % tag
            if literal is not None:
                c.send(t + b" " + text + b" {%d}\r\n" % len(literal))
                line = c.line(self.limit, text.decode("latin-1"))
                if not line.startswith(b"+"):
                    saw_bye |= line.startswith(b"* BYE")
                    return line
                c.send(literal + b"\r\n")
            else:
                c.send(t + b" " + text + b"\r\n")
            while True:
                extra = 3 if b"SEARCH" in text.upper() else LOGIN_EXTRA_S if text.startswith(b"LOGIN") else 0
                line = c.line(self.limit + extra, text.decode("latin-1"))
                saw_bye |= line.startswith(b"* BYE")
                if line.startswith(t + b" ") or (line.startswith(b"* BYE") and b"LOGOUT" not in text.upper()):
                    return line

        try:
            if not c.line(self.limit + 2, "greeting").startswith(b"* OK"):
                return
            user = IMAP_USER
            pw = PASSWORD if rng.random() < 0.95 else "wrong"
            if not cmd(f'LOGIN "{user}" "{pw}"'.encode()).startswith(b"f1 OK"):
                return
            cmd(b"SELECT INBOX")
            for _ in range(rng.randint(1, 15)):
                step = rng.random()
                n = rng.choice(HOSTILE_NUMBERS)
                if step < 0.15:
                    items = rng.choice(["FLAGS", "BODYSTRUCTURE", "ENVELOPE", "BODY.PEEK[]", "BODY[HEADER]",
                                        "BODY.PEEK[1.2.MIME]", f"BODY.PEEK[]<0.{n}>", "RFC822.SIZE", "BINARY[1]",
                                        "(UID FLAGS INTERNALDATE)", "BODY[TEXT]<5.10>", "ALL", "FULL", "X"])
                    cmd(f"{rng.choice(['', 'UID '])}FETCH {n} {items}".encode())
                elif step < 0.3:
                    key = rng.choice(["ALL", f"BODY {rng.choice(['body', 'caf', 'x'])}", "TEXT inner", "UNSEEN",
                                      f"CHARSET {rng.choice(CHARSETS)} SUBJECT fuzz", f"UID {n}", f"LARGER {n}",
                                      "OR SEEN (NOT DELETED)", "HEADER Message-ID fz", "SENTBEFORE 1-Jan-1900",
                                      "(" * 50, "NOT " * 40 + "ALL"])
                    cmd(f"{rng.choice(['', 'UID '])}SEARCH {key}".encode("utf-8", "surrogateescape"))
                elif step < 0.4:
                    pattern = rng.choice(["*", "%", "%*%*%*%*%*%*x", "INBOX*", "&AGUA-", "*" * 40, "fz%", "\"\""])
                    cmd(f'LIST "" "{pattern}"'.encode("utf-8", "surrogateescape"))
                elif step < 0.5:
                    verb = rng.choice(["CREATE", "DELETE", "SELECT", "EXAMINE", "STATUS"])
                    # copies and moves go to "fz": never deleted, so no acknowledged mail goes
                    name = rng.choice(["fz/a", "fz.b", "&Jjo-", "a\\b", "../x", "INBOX/fz", "x" * 300]
                                      + ([] if verb == "DELETE" else ["fz"]))
                    cmd(f'{verb} "{name}"'
                        f'{" (MESSAGES UIDNEXT)" if step > 0.49 else ""}'.encode())
                    cmd(b"SELECT INBOX")
                elif step < 0.6:
                    token = self.token()
                    reply = cmd(b"APPEND INBOX (\\Seen)", message(rng, token))
                    self.stats.messages += 1
                    if b" OK" in reply[:8]:
                        self.accepted[token] = {IMAP_USER: 1}
                    else:
                        self.refused.add(token)
                elif step < 0.68:
                    cmd(f"STORE {n} {rng.choice(['+FLAGS', '-FLAGS', 'FLAGS.SILENT'])} (\\Flagged $x)".encode())
                elif step < 0.74:
                    few = rng.choice(FEW_NUMBERS)
                    cmd(f"{rng.choice(['', 'UID '])}{rng.choice(['COPY', 'MOVE'])} {few} {rng.choice(['fz', 'INBOX'])}"
                        .encode())
                elif step < 0.8:
                    cmd(rng.choice([b"NOOP", b"CHECK", b"CAPABILITY", b"NAMESPACE", b"STARTTLS x", b"ID NIL",
                                    b"ENABLE UTF8=ACCEPT", b"ENABLE IMAP4rev2", b"GETQUOTAROOT INBOX"]))
                elif step < 0.85:
                    cmd(b"x" + b" {%d+}" % rng.choice([2_000_000_000, 10**30]))
                    return                                  # the bytes would follow: the server says BYE
                else:
                    cmd(rng.choice(GARBAGE))
                if saw_bye:
                    return
            cmd(b"LOGOUT")
        except TimedOut:
            pass
        except Closed:
            if not saw_bye and not any(line.startswith(b"* BYE") for line in c.lines):
                last = c.lines[-1] if c.lines else b""
                self.stats.find(f"imap: closed without * BYE after {last[:80]!r}, on {c.sent!r}")
        finally:
            c.close()

    # -- POP3 --
    def _pop3(self) -> None:
        rng = self.rng
        c = Conn(self.ports["pop3"], self.source(), self.stats, "pop3", str(self.root.path))
        quit_sent = False

        def cmd(text: bytes) -> bytes:
            return self._pop3_cmd(c, text)

        try:
            if not c.line(self.limit + 2, "greeting").startswith(b"+OK"):
                return
            if not cmd(f"USER {POP_USER}".encode()).startswith(b"+OK"):
                return
            if not cmd(f"PASS {PASSWORD if rng.random() < 0.95 else 'nope'}".encode()).startswith(b"+OK"):
                return
            for _ in range(rng.randint(1, 12)):
                n = rng.choice(HOSTILE_NUMBERS).encode()
                step = rng.random()
                if step < 0.2:
                    cmd(b"STAT")
                elif step < 0.35:
                    cmd(rng.choice([b"LIST", b"UIDL"]))
                elif step < 0.5:
                    cmd(rng.choice([b"LIST ", b"UIDL "]) + n)
                elif step < 0.65:
                    cmd(b"RETR " + n)
                elif step < 0.75:
                    cmd(b"TOP " + n + b" " + rng.choice(HOSTILE_NUMBERS).encode())
                elif step < 0.82:
                    cmd(b"DELE " + n)
                elif step < 0.88:
                    cmd(rng.choice([b"NOOP", b"RSET", b"CAPA", b"STLS x"]))
                else:
                    cmd(rng.choice(GARBAGE))
            quit_sent = True
            cmd(b"QUIT")
        except TimedOut:
            pass
        except Closed:
            last = c.lines[-1] if c.lines else b""
            if not last.startswith(b"-ERR") and not (quit_sent and last.startswith(b"+OK")):
                self.stats.find(f"pop3: closed without a goodbye after {last[:80]!r}, on {c.sent!r}")
        finally:
            c.close()

    def _pop3_cmd(self, c: Conn, text: bytes) -> bytes:
        """Send one command, read its whole reply; the first line. Whether a +OK reply
        goes on to a "." line follows from the command (RFC 1939, RFC 2449 CAPA): a
        multi-line reply read as one line would leave lines that later replies are
        mistaken for, until one waits for a "." that never comes."""
        c.send(text + b"\r\n")
        verb, _, arg = text.partition(b" ")
        first = c.line(self.limit + (LOGIN_EXTRA_S if verb == b"PASS" else 0), text.decode("latin-1"))
        multi = verb.upper() in (b"RETR", b"TOP", b"CAPA") or (verb.upper() in (b"LIST", b"UIDL") and not arg)
        if multi and first.startswith(b"+OK"):
            while c.line(self.limit, text.decode("latin-1")).rstrip(b"\r") != b".":
                pass
        return first

    # -- ManageSieve (POP_USER's scripts: its mail is not tracked, and no script sends any on) --
    def _managesieve(self) -> None:
        rng = self.rng
        c = Conn(self.ports["managesieve"], self.source(), self.stats, "managesieve", str(self.root.path))
        logout_sent = False

        def cmd(text: bytes) -> bytes:
            return self._sieve_cmd(c, text)

        try:
            while not c.line(self.limit + 2, "greeting").startswith((b"OK", b"NO", b"BYE")):
                pass
            password = PASSWORD if rng.random() < 0.95 else "nope"
            plain = base64.b64encode(f"\0{POP_USER}\0{password}".encode())
            if not cmd(b'AUTHENTICATE "PLAIN" "' + plain + b'"').startswith(b"OK"):
                return
            names = ["main", "x", "../x", ".x", "a/b", "", "\u00e9t\u00e9", "x" * 300, "nul\0"]
            for _ in range(rng.randint(1, 10)):
                name = _sieve_string(rng.choice(names))
                script = rng.choice(SIEVE_SCRIPTS).encode()
                step = rng.random()
                if step < 0.25:
                    cmd(b"PUTSCRIPT " + name + b" {%d+}\r\n" % len(script) + script)
                elif step < 0.35:
                    cmd(b"CHECKSCRIPT {%d+}\r\n" % len(script) + script)
                elif step < 0.5:
                    cmd(rng.choice([b"GETSCRIPT ", b"DELETESCRIPT ", b"SETACTIVE "]) + name)
                elif step < 0.6:
                    cmd(b"RENAMESCRIPT " + name + b" " + _sieve_string(rng.choice(names)))
                elif step < 0.7:
                    cmd(b"HAVESPACE " + name + b" " + rng.choice(HOSTILE_NUMBERS).encode())
                elif step < 0.85:
                    cmd(rng.choice([b"LISTSCRIPTS", b"CAPABILITY", b'NOOP "t"', b"STARTTLS x"]))
                else:
                    cmd(rng.choice(GARBAGE))
            logout_sent = True
            cmd(b"LOGOUT")
        except TimedOut:
            pass
        except Closed:
            last = c.lines[-1] if c.lines else b""
            if not last.startswith(b"BYE") and not (logout_sent and last.startswith(b"OK")):
                self.stats.find(f"managesieve: closed without BYE after {last[:80]!r}, on {c.sent!r}")
        finally:
            c.close()

    def _sieve_cmd(self, c: Conn, text: bytes) -> bytes:
        """Send one command, read its reply up to its OK, NO or BYE line (a literal in it, as
        GETSCRIPT's script or a long NO text, is read by its length): that line."""
        c.send(text + b"\r\n")
        what = text[:60].decode("latin-1")
        extra = LOGIN_EXTRA_S if text.startswith(b"AUTHENTICATE") else 0
        while True:
            line = c.line(self.limit + extra, what)
            literal = re.search(rb"\{(\d+)\}\r?$", line)
            if literal:
                c.take(int(literal.group(1)), self.limit)
                line = line + c.line(self.limit, what)
            if line.startswith((b"OK", b"NO", b"BYE")):
                return line

    # -- between runs --
    def archive(self, mail_dir: Path) -> int:
        """Move IMAP_USER's mail from the folders its sessions use into one they never
        touch, where check_mail still finds it: the working folders stay at what one
        run adds, so a long run's replies measure the server, not a folder grown without
        bound. Call it between runs (no session open). The number moved."""
        from engine.maildir import Maildir
        local, domain = IMAP_USER.split("@")
        box = Maildir(mail_dir / domain / local)
        archive = box.folder("Archive")
        moved = 0
        for name in ("INBOX", "fz"):
            try:
                folder = box.folder(name)
            except MailError:
                continue                    # "fz" not created yet
            for msg in folder.sync():
                folder.move_to(msg, archive)
                moved += 1
        return moved

    # -- after the run --
    def check_mail(self, mail_dir: Path) -> None:
        """Every acknowledged message is in its mailbox: exactly once for EXACT_USER (no
        IMAP session touches it), at least once for IMAP_USER (its sessions copy); no
        refused message is anywhere."""
        seen: dict[tuple[str, str], int] = {}
        for path in mail_dir.rglob("*"):
            if path.parent.name not in ("cur", "new") or not path.is_file():
                continue
            head = path.read_bytes()[:4096]
            start = head.find(b"Message-ID: <fz")
            if start >= 0:
                token = head[start + 13:head.index(b"@", start)].decode()
                account = path.relative_to(mail_dir).parts
                key = (token, f"{account[1]}@{account[0]}")
                seen[key] = seen.get(key, 0) + 1
        for token, where in self.accepted.items():
            for account, copies in where.items():
                found = seen.get((token, account), 0)
                if (found != copies) if account == EXACT_USER else (found < copies):
                    self.stats.find(f"mail: {token} acknowledged for {account}, found {found} copies")
        for token in self.refused:
            for account in USERS:
                if seen.get((token, account)):
                    self.stats.find(f"mail: {token} refused but found in {account}")

    def check_log(self, log_file: Path) -> None:
        text = log_file.read_text(errors="replace") if log_file.exists() else ""
        if "Traceback" in text:
            at = text.index("Traceback")
            self.stats.find("log: a traceback: " + text[max(0, at - 300):at + 1500])


def serving_pids(server_pid: int) -> list[int]:
    """The serving processes of a `mailctl serve`: its children (the supervisor itself
    serves nothing)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server_pid:
            kids.append(int(stat.parent.name))
    return kids


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
