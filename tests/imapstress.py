"""A concurrency stress load for an IMAP server, with every response checked: N IMAP clients
on M shared mailboxes of one account send random commands (FETCH, STORE of keywords and
flags, SEARCH, COPY, MOVE, EXPUNGE, APPEND, IDLE, STATUS, LIST, SELECT) for a bounded time,
while a POP3 client works on INBOX and an SMTP stream delivers into it. Each IMAP client keeps
the model of its selected mailbox (tests/imapcheck.py) and checks every response against it.

    result = run_stress(Target(imap_port=..., pop3_port=..., smtp_port=..., user=..., password=...),
                        clients=6, mailboxes=4, seconds=10)
    result.errors          # [(kind, detail, transcript tail)]; 0 is the goal

Used by tests/test_imap_stress.py (short) and bench/imap_stress.py (60 s, and against Dovecot).
"""
from __future__ import annotations

import poplib
import random
import re
import smtplib
import socket
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

from imapcheck import Registry, Selected, Violation, appenduid, copyuid

TIMEOUT = 20.0
_LITERAL_AT_END = re.compile(rb"~?\{(\d+)\}$")
MAX_MESSAGES = 60          # a mailbox above this gets more EXPUNGE and MOVE than APPEND


@dataclass
class Target:
    imap_port: int
    user: str
    password: str
    pop3_port: int | None = None
    smtp_port: int | None = None
    host: str = "127.0.0.1"
    rcpt: str = ""                      # SMTP recipient (default: user)


@dataclass
class Result:
    commands: int = 0
    seconds: float = 0.0
    errors: list = field(default_factory=list)          # (kind, detail, tail)
    latency: dict = field(default_factory=lambda: defaultdict(list))
    refused: Counter = field(default_factory=Counter)   # NO answers allowed by the RFC (raced)
    pop3_sessions: int = 0
    smtp_messages: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, kind: str, detail: str, tail=()) -> None:
        with self.lock:
            self.errors.append((kind, detail, list(tail)))

    def kinds(self) -> Counter:
        return Counter(k for k, _, _ in self.errors)


def message(n: int, tag: str) -> bytes:
    return (f"From: stress <stress@example.org>\r\nTo: box@example.org\r\nSubject: {tag} {n}\r\n"
            f"Message-ID: <{tag}.{n}.{random.getrandbits(40)}@example.org>\r\n\r\n"
            f"message {n} from {tag}\r\n" + "x" * random.randint(0, 400) + "\r\n").encode()


class Conn:
    """A raw IMAP connection reading logical lines (literals joined in)."""

    def __init__(self, target: Target, tail: deque):
        self.sock = socket.create_connection((target.host, target.imap_port), timeout=TIMEOUT)
        self.buf = b""
        self.tail = tail
        self.n = 0
        self.line()

    def line(self) -> str:
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            out += line
            literal = _LITERAL_AT_END.search(line)
            if literal:
                size = int(literal.group(1))
                while len(self.buf) < size:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("server closed the connection")
                    self.buf += chunk
                out += b"\r\n" + self.buf[:size]
                self.buf = self.buf[size:]
                continue
            text = out.decode("latin-1")
            self.tail.append("S: " + text[:200])
            return text

    def send(self, data: bytes) -> None:
        self.tail.append("C: " + data[:200].decode("latin-1").rstrip().replace("\r\n", "\\r\\n"))
        self.sock.sendall(data)

    def command(self, text: str, literal: bytes | None = None) -> tuple[list[str], str]:
        """Send one command (a LITERAL+ literal appended when given); the untagged lines and the tagged line."""
        self.n += 1
        tag = f"t{self.n}"
        if literal is None:
            self.send(f"{tag} {text}\r\n".encode())
        else:
            self.send(f"{tag} {text} {{{len(literal)}+}}\r\n".encode() + literal + b"\r\n")
        untagged = []
        while True:
            line = self.line()
            if line.startswith(tag + " "):
                return untagged, line[len(tag) + 1:]
            untagged.append(line)

    def close(self) -> None:
        self.sock.close()


class ImapClient:
    def __init__(self, index: int, target: Target, mailboxes: list[str], registry: Registry,
                 result: Result, deadline: float):
        self.index = index
        self.target, self.mailboxes, self.registry = target, mailboxes, registry
        self.result, self.deadline = result, deadline
        self.keyword = f"$Stress{index}"
        self.expected: dict[tuple[str, int], dict[int, bool]] = defaultdict(dict)
        self.why: dict[tuple[str, int], dict[int, str]] = defaultdict(dict)
        self.tail: deque = deque(maxlen=40)
        self.rng = random.Random(index * 7919 + int(time.time()))
        self.sel: Selected | None = None
        self.appended = 0

    # -- plumbing ----------------------------------------------------------------------

    def report(self, violations: list[Violation]) -> None:
        for v in violations:
            self.result.error(v.kind, f"client {self.index}: {v.detail}", self.tail)

    def run_command(self, name: str, text: str, literal: bytes | None = None, allow_no: bool = False):
        # allow_no: a NO the RFC allows here (FETCH or STORE by number of a message another
        # session expunged), counted in result.refused
        """Run a command, feed its untagged lines to the model; the (untagged, tagged) pair."""
        floor = self.registry.highest(self.sel.mailbox) if self.sel else 0
        started = time.perf_counter()
        untagged, tagged = self.conn.command(text, literal)
        with self.result.lock:
            self.result.latency[name].append(time.perf_counter() - started)
            self.result.commands += 1
        if self.sel is not None:
            for line in untagged:
                self.report(self.sel.untagged(line, name, floor))
        status = tagged.split(" ", 1)[0]
        # NO [EXPUNGEISSUED] (RFC 5530): the message was expunged by another session meanwhile
        allow_no = allow_no or tagged.startswith("NO [EXPUNGEISSUED]")
        if status == "BAD" or (status == "NO" and not allow_no):
            self.result.error(f"tagged-{status.lower()}", f"client {self.index}: {name}: {tagged[:160]}", self.tail)
        elif status == "NO":
            with self.result.lock:
                self.result.refused[name] += 1
        return untagged, tagged

    # -- the session -------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.conn = Conn(self.target, self.tail)
            _, tagged = self.conn.command(f'LOGIN "{self.target.user}" "{self.target.password}"')
            if not tagged.startswith("OK"):
                self.result.error("login", f"client {self.index}: {tagged}", self.tail)
                return
            self.select(self.rng.choice(self.mailboxes))
            while time.monotonic() < self.deadline:
                self.step()
            self.conn.command("LOGOUT")
        except (OSError, ConnectionError) as e:
            if time.monotonic() < self.deadline + TIMEOUT:
                self.result.error("connection", f"client {self.index}: {type(e).__name__}: {e}", self.tail)
        except Exception as e:          # noqa: BLE001 - a response the client could not read is an error too, never a silent stop
            self.result.error("client-crash", f"client {self.index}: {type(e).__name__}: {e}", self.tail)
        finally:
            if hasattr(self, "conn"):
                self.conn.close()

    def select(self, mailbox: str) -> None:
        # a fresh model: run_command checks SELECT's UIDNEXT against this mailbox's UIDs
        self.sel = Selected(mailbox, self.keyword, {})
        self.run_command("SELECT", f'SELECT "{mailbox}"')
        self.report(self.registry.uidvalidity(mailbox, self.sel.uidvalidity))
        self.sel.expected = self.expected[(mailbox, self.sel.uidvalidity)]
        self.sel.why = self.why[(mailbox, self.sel.uidvalidity)]
        self.resync()

    def resync(self) -> None:
        """UID FETCH 1:* (UID FLAGS): learn every UID, check the own keyword of each."""
        if self.sel.exists:
            self.run_command("UID FETCH", "UID FETCH 1:* (UID FLAGS)")

    def step(self) -> None:
        sel = self.sel
        full = sel.exists > MAX_MESSAGES
        ops = [(self.fetch, 4), (self.store_keyword, 6), (self.store_system, 2), (self.search, 3),
               (self.copy, 1), (self.move, 2 if full else 1), (self.expunge, 4 if full else 1),
               (self.append, 0 if full else 3), (self.idle, 1), (self.status, 2), (self.list, 1),
               (self.noop, 1), (self.reselect, 1)]
        op = self.rng.choices([o for o, _ in ops], [w for _, w in ops])[0]
        op()

    def some_known(self) -> tuple[int, int] | None:
        known = self.sel.known()
        return self.rng.choice(known) if known else None

    def other_mailbox(self) -> str:
        return self.rng.choice([m for m in self.mailboxes if m != self.sel.mailbox] or self.mailboxes)

    # -- the commands ------------------------------------------------------------------

    def fetch(self) -> None:
        if not self.sel.exists:
            return self.noop()
        lo = self.rng.randint(1, self.sel.exists)
        hi = min(self.sel.exists, lo + self.rng.randint(0, 10))
        self.run_command("FETCH", f"FETCH {lo}:{hi} (UID FLAGS RFC822.SIZE)", allow_no=True)

    def store_keyword(self) -> None:
        """+FLAGS/-FLAGS of the own keyword on a message whose UID is known (non-UID STORE:
        no EXPUNGE may come in its answer). The STORE's own FETCH must show the new state."""
        pick = self.some_known()
        if pick is None:
            return self.append()
        seq, uid = pick
        on = self.rng.random() < 0.6
        self.sel.expected.pop(uid, None)           # unknown while the STORE runs
        text = f"STORE {seq} {'+' if on else '-'}FLAGS ({self.keyword})"
        untagged, tagged = self.run_command("STORE", text, allow_no=True)
        if not tagged.startswith("OK") or "EXPUNGEISSUED" in tagged:
            return                                  # not applied: the message is gone
        answered = False
        for line in untagged:
            if line.startswith(f"* {seq} FETCH") and "FLAGS (" in line:
                answered = True
                has = self.keyword.lower() in line.split("FLAGS (", 1)[1].split(")")[0].lower().split()
                if has != on:
                    self.result.error("own-keyword", f"client {self.index}: STORE answered {line[:160]!r}", self.tail)
        # Expected from now on only when the STORE's own FETCH showed it applied (a STORE on a
        # message another session expunged may answer OK without it) and not expunged since.
        if answered and uid in self.sel.uids:
            self.sel.expected[uid] = on
            self.sel.why[uid] = f"{text} on UID {uid}: {' '.join(untagged)[:160]} {tagged[:40]}"

    def store_system(self) -> None:
        pick = self.some_known()
        if pick is None:
            return self.noop()
        flag = self.rng.choice(["\\Seen", "\\Flagged", "\\Answered"])
        sign = self.rng.choice("+-")
        self.run_command("UID STORE", f"UID STORE {pick[1]} {sign}FLAGS ({flag})")

    def search(self) -> None:
        if self.rng.random() < 0.5:
            untagged, tagged = self.run_command("SEARCH", f"SEARCH KEYWORD {self.keyword}")
            asked = True
        else:
            untagged, tagged = self.run_command("SEARCH", "SEARCH ALL")
            asked = False
        if tagged.startswith("OK"):
            for line in untagged:
                if line.startswith("* SEARCH"):
                    self.report(self.sel.search_result(line, asked, "[EXPUNGEISSUED]" in tagged))

    def copy(self) -> None:
        pick = self.some_known()
        if pick is None:
            return self.noop()
        target = self.other_mailbox()
        _, tagged = self.run_command("UID COPY", f'UID COPY {pick[1]} "{target}"')
        self.record_copy([tagged], target)

    def move(self) -> None:
        pick = self.some_known()
        if pick is None:
            return self.noop()
        target = self.other_mailbox()
        untagged, tagged = self.run_command("UID MOVE", f'UID MOVE {pick[1]} "{target}"')
        self.record_copy(untagged + [tagged], target)

    def record_copy(self, lines: list[str], target: str) -> None:
        for line in lines:
            got = copyuid(line)
            if got:
                self.report(self.registry.record(target, got[0], got[2]))

    def expunge(self) -> None:
        pick = self.some_known()
        if pick is None:
            return self.noop()
        _, tagged = self.run_command("UID STORE", f"UID STORE {pick[1]} +FLAGS.SILENT (\\Deleted)")
        if tagged.startswith("OK"):
            self.run_command("UID EXPUNGE", f"UID EXPUNGE {pick[1]}")

    def append(self) -> None:
        target = self.rng.choice(self.mailboxes)
        self.appended += 1
        flags = self.rng.choice(["", "(\\Seen) ", "(\\Flagged) "])
        _, tagged = self.run_command("APPEND", f'APPEND "{target}" {flags}'.rstrip(), message(self.appended, f"c{self.index}"))
        got = appenduid(tagged)
        if got:
            self.report(self.registry.record(target, got[0], got[1]))
        elif tagged.startswith("OK"):
            self.result.error("appenduid-missing", f"client {self.index}: {tagged[:120]}", self.tail)

    def idle(self) -> None:
        self.conn.n += 1
        tag = f"t{self.conn.n}"
        started = time.perf_counter()
        self.conn.send(f"{tag} IDLE\r\n".encode())
        first = self.conn.line()
        if not first.startswith("+"):
            self.result.error("idle", f"client {self.index}: IDLE answered {first[:120]}", self.tail)
            return
        self.conn.sock.settimeout(self.rng.uniform(0.1, 0.6))
        try:
            while True:
                self.report(self.sel.untagged(self.conn.line(), "IDLE"))
        except (TimeoutError, socket.timeout):
            pass
        finally:
            self.conn.sock.settimeout(TIMEOUT)
        self.conn.send(b"DONE\r\n")
        while True:
            line = self.conn.line()
            if line.startswith(tag + " "):
                break
            self.report(self.sel.untagged(line, "IDLE"))
        with self.result.lock:
            self.result.latency["IDLE"].append(time.perf_counter() - started)
            self.result.commands += 1
        if not line.startswith(tag + " OK"):
            self.result.error("tagged-no", f"client {self.index}: IDLE: {line[:120]}", self.tail)

    def status(self) -> None:
        mailbox = self.other_mailbox()
        floor = self.registry.highest(mailbox)
        untagged, tagged = self.run_command("STATUS", f'STATUS "{mailbox}" (MESSAGES UIDNEXT RECENT UNSEEN)')
        for line in untagged:
            if line.startswith("* STATUS"):
                fields = line.rsplit("(", 1)[1].rstrip(")").split()
                values = dict(zip(fields[::2], fields[1::2]))
                if int(values.get("UIDNEXT", 0)) <= floor:
                    self.result.error("uidnext-too-low", f"client {self.index}: {line!r}: UID {floor} handed out before",
                                      self.tail)
                if int(values.get("RECENT", 0)) > int(values.get("MESSAGES", 0)):
                    self.result.error("recent-over-exists", f"client {self.index}: {line!r}", self.tail)

    def list(self) -> None:
        untagged, _ = self.run_command("LIST", 'LIST "" *')
        names = {line.rsplit(" ", 1)[1].strip('"') for line in untagged if line.startswith("* LIST")}
        missing = [m for m in self.mailboxes if m not in names]
        if missing:
            self.result.error("list-missing", f"client {self.index}: LIST lacks {missing}", self.tail)

    def noop(self) -> None:
        self.run_command("NOOP", "NOOP")

    def reselect(self) -> None:
        self.select(self.other_mailbox())


def pop3_loop(target: Target, result: Result, deadline: float) -> None:
    """POP3 sessions on INBOX: STAT, LIST, UIDL, a RETR whose size must match LIST, sometimes DELE."""
    rng = random.Random()
    while time.monotonic() < deadline:
        try:
            p = poplib.POP3(target.host, target.pop3_port, timeout=TIMEOUT)
            p.user(target.user)
            p.pass_(target.password)
            count, _ = p.stat()
            sizes = {int(n): int(s) for n, s in (x.split() for x in p.list()[1])}
            uidls = [x.split()[1] for x in p.uidl()[1]]
            if len(sizes) != count or len(set(uidls)) != count:
                result.error("pop3-listing", f"STAT {count}, LIST {len(sizes)}, UIDL {len(set(uidls))} distinct")
            if count:
                n = rng.randint(1, count)
                try:
                    lines = p.retr(n)[1]
                except poplib.error_proto:      # expunged over IMAP since the session began
                    with result.lock:
                        result.refused["POP3 RETR"] += 1
                    lines = None
                octets = sum(len(x) + 2 for x in lines or ())
                if lines is not None and octets != sizes[n]:
                    result.error("pop3-size", f"RETR {n}: {octets} octets, LIST said {sizes[n]}")
                if count > 20 and rng.random() < 0.5:
                    p.dele(n)
            p.quit()
            with result.lock:
                result.pop3_sessions += 1
        except (OSError, poplib.error_proto) as e:
            result.error("pop3", f"{type(e).__name__}: {e}")
        time.sleep(rng.uniform(0.05, 0.3))


def smtp_loop(target: Target, result: Result, deadline: float) -> None:
    """A stream of messages into INBOX over SMTP (one connection, a message every 20-150 ms)."""
    rng = random.Random()
    n = 0
    s = None
    while time.monotonic() < deadline:
        try:
            if s is None:
                s = smtplib.SMTP(target.host, target.smtp_port, timeout=TIMEOUT)
            n += 1
            s.sendmail("stream@example.org", [target.rcpt or target.user], message(n, "smtp"))
            with result.lock:
                result.smtp_messages += 1
        except (OSError, smtplib.SMTPException) as e:
            result.error("smtp", f"{type(e).__name__}: {e}")
            s = None
        time.sleep(rng.uniform(0.02, 0.15))
    if s is not None:
        try:
            s.quit()
        except (OSError, smtplib.SMTPException):
            pass


def prepare(target: Target, mailboxes: list[str]) -> None:
    """Create the shared mailboxes (INBOX exists)."""
    conn = Conn(target, deque(maxlen=10))
    conn.command(f'LOGIN "{target.user}" "{target.password}"')
    for m in mailboxes:
        if m != "INBOX":
            conn.command(f'CREATE "{m}"')
    conn.command("LOGOUT")
    conn.close()


def run_stress(target: Target, clients: int = 6, mailboxes: int = 4, seconds: float = 10.0) -> Result:
    names = ["INBOX"] + [f"stress{i}" for i in range(1, mailboxes)]
    prepare(target, names)
    result = Result()
    registry = Registry()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=ImapClient(i, target, names, registry, result, deadline).run, daemon=True)
               for i in range(clients)]
    if target.pop3_port:
        threads.append(threading.Thread(target=pop3_loop, args=(target, result, deadline), daemon=True))
    if target.smtp_port:
        threads.append(threading.Thread(target=smtp_loop, args=(target, result, deadline), daemon=True))
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 3 * TIMEOUT)
        if t.is_alive():
            result.error("hang", f"{t.name} still running {3 * TIMEOUT:.0f} s after the end")
    result.seconds = time.monotonic() - started
    return result


def summary(result: Result, examples: int = 3) -> str:
    lines = [f"{result.commands} IMAP commands in {result.seconds:.1f} s = {result.commands / max(result.seconds, 1e-9):.0f}/s; "
             f"{result.pop3_sessions} POP3 sessions, {result.smtp_messages} SMTP messages; "
             f"{len(result.errors)} errors"]
    lat = ", ".join(f"{k} {1000 * sum(v) / len(v):.1f} ms" for k, v in sorted(result.latency.items()))
    lines.append("mean latency: " + lat)
    if result.refused:
        lines.append(f"NO answers the RFC allows (raced with an expunge): {dict(result.refused)}")
    for kind, count in result.kinds().most_common():
        lines.append(f"  {kind}: {count}")
        for _, detail, tail in [e for e in result.errors if e[0] == kind][:examples]:
            lines.append(f"    {detail}")
            lines.extend(f"      | {t}" for t in tail[-8:])
    return "\n".join(lines)
