"""Scripted IMAP sessions: a script file of commands and the exact responses expected,
run against a server on 127.0.0.1 over raw sockets (tests/test_imap_conformance.py).

The format, one directive a line:

    # a comment (blank lines are ignored too)
    @dovecot skip <why>     the script is not run against Dovecot (runner option)
    = hello                 a message named hello, up to a line holding only "=";
    Subject: hi             its lines are sent with CRLF ends
    =
    =- word                 the same without the CRLF after its last line (a literal
    café                    that is a search string or a name, not a message)
    =
    C1: a LOGIN ${USER} ${PASS}     session 1 sends this line (opened at first use; its
                                    greeting is read and must be "* OK")
    S1: a OK ...            the next line session 1 reads must match this pattern
    S1~ * 1 EXISTS          consecutive "~" lines of one session: the next lines it reads
    S1~ * 1 RECENT          must match them in ANY order (where the RFC allows any order)
    S1? * OK [CLOSED] ...   an optional line: consumed when the next line matches it
    S1* b OK ...            skip untagged lines (what racing sessions may announce) up to
                            a line matching this one
    S1: <closed>            the server closed session 1's connection
    WAIT 0.5                sleep (only where another process must notice a change)

In commands, {hello} is replaced by a synchronizing literal holding the message hello
(the runner waits for the server's "+" before sending it) and {hello+} by a LITERAL+ one;
any other {...} is sent as it is. ${NAME} (in commands and messages) is replaced by a variable: USER and OTHER (two
accounts of this script alone), PASS, and whatever a pattern captured.

Flags are compared as a set: every FLAGS (...) list read is put in one order (\\Answered
\\Flagged \\Deleted \\Seen \\Draft \\Recent, then keywords by name), and so is a pattern's list
unless it holds a wildcard; write pattern lists in that order when they hold one.
Patterns are literal text except: "..." matches any text; {{regex}} a regular
expression; {{name=regex}} also captures the match into ${name} for later lines.
A response holding literals is one logical line with the literal's bytes written
escaped: CR as \\r, LF as \\n, other bytes outside printable ASCII as \\xNN, e.g.
    S1: * 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {15}\\r\\nSubject: hi\\r\\n\\r\\n)
"""
from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

READ_TIMEOUT = 10.0
_LITERAL_AT_END = re.compile(rb"~?\{(\d+)\+?\}$")
_MACRO = re.compile(r"\{([A-Za-z_][\w-]*)(\+?)\}")
_VAR = re.compile(r"\$\{([A-Za-z_]\w*)\}")
_LINE = re.compile(r"^(C|S)(\d+)([:~?*]) ?(.*)$")


class ScriptError(AssertionError):
    pass


@dataclass
class Step:
    lineno: int
    kind: str              # "send", "expect", "optional", "skip_to", "unordered", "closed", "wait"
    session: int = 0
    text: str = ""
    group: list = field(default_factory=list)   # for "unordered": (lineno, text) pairs


@dataclass
class Script:
    name: str
    steps: list
    messages: dict
    dovecot_skip: str = ""


def parse(path: Path) -> Script:
    steps: list[Step] = []
    messages: dict[str, bytes] = {}
    dovecot_skip = ""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i]
        lineno = i + 1
        i += 1
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("@dovecot skip"):
            dovecot_skip = line[len("@dovecot skip"):].strip() or "skipped"
            continue
        if line.startswith("= ") or line.startswith("=- "):
            bare, name = line.startswith("=-"), line.split(" ", 1)[1].strip()
            body = []
            while i < len(lines) and lines[i] != "=":
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ScriptError(f"{path.name}:{lineno}: message {line[2:]} has no closing '='")
            i += 1
            messages[name] = "\r\n".join(body).encode() + (b"" if bare else b"\r\n")
            continue
        if line.startswith("WAIT "):
            steps.append(Step(lineno, "wait", text=line[5:].strip()))
            continue
        m = _LINE.match(line)
        if not m:
            raise ScriptError(f"{path.name}:{lineno}: not a directive: {line!r}")
        who, session, sep, text = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        if who == "C":
            steps.append(Step(lineno, "send", session, text))
        elif text == "<closed>":
            steps.append(Step(lineno, "closed", session))
        elif sep == "*":
            steps.append(Step(lineno, "skip_to", session, text))
        elif sep == "?":
            steps.append(Step(lineno, "optional", session, text))
        elif sep == "~":
            prev = steps[-1] if steps else None
            if prev and prev.kind == "unordered" and prev.session == session and prev.lineno == lineno - len(prev.group):
                prev.group.append((lineno, text))
            else:
                steps.append(Step(lineno, "unordered", session, group=[(lineno, text)]))
        else:
            steps.append(Step(lineno, "expect", session, text))
    return Script(path.stem, steps, messages, dovecot_skip)


def escape(data: bytes) -> str:
    """A response's bytes as script text: CR, LF and non-printables escaped."""
    out = []
    for b in data:
        if b == 13:
            out.append("\\r")
        elif b == 10:
            out.append("\\n")
        elif 32 <= b < 127:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


_FLAG_LIST = re.compile(r"FLAGS \(([^()]*)\)")
_SYSTEM_ORDER = {f: i for i, f in enumerate(("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent"))}


def canonical_flags(text: str) -> str:
    """Every FLAGS list of a line in one order, since the RFC gives them none."""
    def order(m):
        if "{{" in m.group(1) or "..." in m.group(1):
            return m.group(0)
        flags = sorted(m.group(1).split(), key=lambda f: (_SYSTEM_ORDER.get(f, len(_SYSTEM_ORDER)), f.lower()))
        return f"FLAGS ({' '.join(flags)})"
    return _FLAG_LIST.sub(order, text)


def compile_pattern(text: str) -> tuple[re.Pattern, list[str]]:
    parts, names = [], []
    pos = 0
    for m in re.finditer(r"\{\{(.*?)\}\}|\.\.\.", text):
        parts.append(re.escape(text[pos:m.start()]))
        if m.group(0) == "...":
            parts.append(".*")
        else:
            inner = m.group(1)
            cap = re.match(r"^([A-Za-z_]\w*)=(.*)$", inner)
            if cap:
                names.append(cap.group(1))
                parts.append(f"(?P<{cap.group(1)}>{cap.group(2)})")
            else:
                parts.append(f"(?:{inner})")
        pos = m.end()
    parts.append(re.escape(text[pos:]))
    return re.compile("".join(parts) + r"\Z", re.S), names


class Session:
    """One raw connection that reads logical lines (a line with its literals)."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=READ_TIMEOUT)
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def read_line(self) -> bytes:
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            out += line
            m = _LITERAL_AT_END.search(line)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]

    def close(self) -> None:
        self.sock.close()


class Runner:
    def __init__(self, script: Script, host: str, port: int, variables: dict[str, str]):
        self.script = script
        self.host, self.port = host, port
        self.vars = dict(variables)
        self.sessions: dict[int, Session] = {}
        self.transcript: list[str] = []
        self.pushed: dict[int, str] = {}     # a line read by an optional step that did not match

    def fail(self, step: Step, why: str) -> None:
        tail = "\n".join(self.transcript[-40:])
        raise ScriptError(f"{self.script.name}.imap line {step.lineno}: {why}\n--- transcript (last lines) ---\n{tail}")

    def subst(self, text: str) -> str:
        return _VAR.sub(lambda m: self.vars.get(m.group(1), m.group(0)), text)

    def session(self, n: int, step: Step) -> Session:
        if n not in self.sessions:
            s = Session(self.host, self.port)
            self.sessions[n] = s
            greeting = s.read_line()
            self.transcript.append(f"S{n}: {escape(greeting)}")
            if not greeting.startswith(b"* OK"):
                self.fail(step, f"greeting {greeting!r}")
        return self.sessions[n]

    def read(self, n: int, step: Step) -> str:
        if n in self.pushed:
            return self.pushed.pop(n)
        try:
            text = escape(self.session(n, step).read_line())
        except (TimeoutError, socket.timeout):
            self.fail(step, f"S{n}: no response within {READ_TIMEOUT}s")
        except EOFError:
            self.fail(step, f"S{n}: connection closed")
        self.transcript.append(f"S{n}: {text}")
        return text

    def send(self, step: Step) -> None:
        s = self.session(step.session, step)
        text = self.subst(step.text)
        pieces = []      # (bytes to send, wait for "+" after it)
        pos = 0
        out = b""
        for m in _MACRO.finditer(text):
            body = self.script.messages.get(m.group(1))
            if body is None:
                continue
            body = self.subst(body.decode()).encode()
            out += text[pos:m.start()].encode() + f"{{{len(body)}{m.group(2)}}}\r\n".encode()
            if not m.group(2):
                pieces.append((out, True))
                out = b""
            out += body
            pos = m.end()
        out += text[pos:].encode() + b"\r\n"
        pieces.append((out, False))
        self.transcript.append(f"C{step.session}: {escape(b''.join(p for p, _ in pieces))}")
        for data, wait_plus in pieces:
            s.sock.sendall(data)
            if wait_plus:
                got = self.read(step.session, step)
                if not got.startswith("+"):
                    self.fail(step, f"expected a '+' continuation for the literal, got {got!r}")

    def match(self, step: Step, lineno: int, pattern: str, got: str) -> bool:
        regex, names = compile_pattern(canonical_flags(self.subst(pattern)))
        m = regex.match(canonical_flags(got))
        if m:
            self.vars.update({k: m.group(k) for k in names})
        return bool(m)

    def run(self) -> None:
        try:
            for step in self.script.steps:
                getattr(self, "do_" + step.kind)(step)
        finally:
            for s in self.sessions.values():
                s.close()

    def do_send(self, step: Step) -> None:
        self.send(step)

    def do_wait(self, step: Step) -> None:
        time.sleep(float(step.text))

    def do_expect(self, step: Step) -> None:
        got = self.read(step.session, step)
        if not self.match(step, step.lineno, step.text, got):
            self.fail(step, f"S{step.session} expected\n  {self.subst(step.text)}\ngot\n  {got}")

    def do_skip_to(self, step: Step) -> None:
        while True:
            got = self.read(step.session, step)
            if self.match(step, step.lineno, step.text, got):
                return
            if not got.startswith("* "):
                self.fail(step, f"S{step.session} expected\n  {self.subst(step.text)}\ngot\n  {got}")

    def do_optional(self, step: Step) -> None:
        got = self.read(step.session, step)
        if not self.match(step, step.lineno, step.text, got):
            self.pushed[step.session] = got

    def do_unordered(self, step: Step) -> None:
        pending = list(step.group)
        for _ in range(len(step.group)):
            got = self.read(step.session, step)
            hit = next((p for p in pending if self.match(step, p[0], p[1], got)), None)
            if hit is None:
                wanted = "\n  ".join(self.subst(t) for _, t in pending)
                self.fail(step, f"S{step.session} got\n  {got}\nwhich is none of (any order)\n  {wanted}")
            pending.remove(hit)

    def do_closed(self, step: Step) -> None:
        s = self.session(step.session, step)
        try:
            extra = s.read_line()
        except EOFError:
            return
        except (TimeoutError, socket.timeout):
            self.fail(step, f"S{step.session}: still open")
        self.fail(step, f"S{step.session}: expected the connection closed, got {escape(extra)!r}")


def run_script(path: Path, host: str, port: int, variables: dict[str, str]) -> list[str]:
    """Run one script; raises ScriptError on the first mismatch. Returns the transcript."""
    runner = Runner(parse(path), host, port, variables)
    runner.run()
    return runner.transcript
