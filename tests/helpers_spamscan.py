"""A real rspamd and a real SpamAssassin spamd (Debian's rspamd and spamd) for the
spam-scanning tests, each with a private configuration under the test's directory,
listening on a loopback port, stopped by its pid. No network: rspamd's modules that ask
DNS or redis are off, spamd runs with -L (local tests only). GTUBE is spam to both.

    with Rspamd(tmp_path) as r:          # r.address "127.0.0.1:NNNN"; r.stop(); r.start()
    with Spamd(tmp_path) as s:

Learning: LearningRspamd has a controller (r.controller) and its Bayes statistics in a real
redis (Redis, started the same way); LearningSpamd takes TELL and keeps a Bayes database;
both report how many messages they learned as spam and as ham (learned()).
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from helpers_clamav import free_port

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"
SPAMD = shutil.which("spamd") or "/usr/sbin/spamd"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
SA_LEARN = shutil.which("sa-learn") or "/usr/bin/sa-learn"
# rspamd modules that need DNS, redis or the network: off, so a test answers in milliseconds
RSPAMD_OFF = ("rbl", "surbl", "fuzzy_check", "dkim", "spf", "dmarc", "arc", "asn", "emails", "phishing", "mx_check",
              "rspamd_update", "dcc", "hfilter", "greylist", "ratelimit", "neural", "reputation", "url_redirector",
              "history_redis", "replies", "multimap", "whitelist", "dkim_signing", "bimi", "once_received")


def _answers(port: int, request: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 1) as s:
            s.settimeout(2)
            s.sendall(request)
            got = b""
            while expect not in got:
                piece = s.recv(4096)
                if not piece:
                    break
                got += piece
            return expect in got
    except OSError:
        return False


class _Daemon:
    name = ""
    program = ""
    ping = (b"", b"")

    def __init__(self, base: Path):
        self.dir = Path(base) / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 90) -> "_Daemon":
        if not os.path.exists(self.program):
            pytest.skip(f"{self.name} is not installed (Debian package {self.name})")
        # its own session: stop() ends the daemon and every child it forked, by the group's id
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self.dir.joinpath("out.log").open("ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "HOME": str(self.dir)})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.log()[-3000:]}")
            if _answers(self.port, *self.ping):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not start in time: {self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)         # children left behind
            except ProcessLookupError:
                pass
        self.proc = None

    def log(self) -> str:
        return "".join(Path(p).read_text(errors="replace") for p in sorted(glob.glob(str(self.dir / "*.log"))))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Rspamd(_Daemon):
    name = "rspamd"
    program = RSPAMD
    ping = (b"GET /ping HTTP/1.0\r\n\r\n", b"pong")

    def command(self) -> list[str]:
        local = self.dir / "local"
        (local / "local.d").mkdir(parents=True, exist_ok=True)
        for module in RSPAMD_OFF:
            (local / "local.d" / f"{module}.conf").write_text("enabled = false;\n")
        for sub in ("db", "run"):
            (self.dir / sub).mkdir(exist_ok=True)
        (self.dir / "rspamd.conf").write_text(
            '.include "$CONFDIR/common.conf"\n'
            'options {\n  pidfile = "$RUNDIR/rspamd.pid";\n  .include "$CONFDIR/options.inc"\n}\n'
            'logging {\n  type = "file";\n  filename = "$LOGDIR/rspamd.log";\n  level = "info";\n}\n'
            f'worker "normal" {{\n  bind_socket = "127.0.0.1:{self.port}";\n  count = 1;\n'
            '  .include "$CONFDIR/worker-normal.inc"\n}\n')
        user = ["-i"] if os.geteuid() == 0 else []         # as root: run its workers as root (a test only)
        return [RSPAMD, "-f", *user, "-c", str(self.dir / "rspamd.conf"), "--var", f"LOCAL_CONFDIR={local}",
                "--var", f"DBDIR={self.dir / 'db'}", "--var", f"RUNDIR={self.dir / 'run'}",
                "--var", f"LOGDIR={self.dir}"]


class Spamd(_Daemon):
    name = "spamd"
    program = SPAMD
    ping = (b"PING SPAMC/1.5\r\n\r\n", b"PONG")
    public: Path | None = None

    def stop(self) -> None:
        super().stop()
        if self.public is not None:
            shutil.rmtree(self.public, ignore_errors=True)
            self.public = None

    def command(self) -> list[str]:
        site = self.dir / "site"
        user = []
        if os.geteuid() == 0:      # spamd runs as nobody, who cannot enter pytest's 0700 directories
            self.public = Path(tempfile.mkdtemp(prefix="mailctl-test-spamd-"))
            self.public.chmod(0o755)
            site, user = self.public / "site", ["-u", "nobody"]
        site.mkdir(exist_ok=True)
        for pre in glob.glob("/etc/spamassassin/*.pre"):     # the plugins' load lines (Check is needed)
            shutil.copy(pre, site)
        (site / "local.cf").write_text("use_bayes 0\nbayes_auto_learn 0\nskip_rbl_checks 1\n")
        return [SPAMD, f"--siteconfigpath={site}", "-x", "-L", f"--listen=127.0.0.1:{self.port}",
                "--max-children=2", "--min-children=1", "-s", str(self.dir / "spamd.log"), *user]


class Redis(_Daemon):
    """A redis for rspamd's Bayes statistics: loopback, nothing saved to disk."""
    name = "redis"
    program = REDIS
    ping = (b"PING\r\n", b"+PONG")

    def command(self) -> list[str]:
        return [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log"), "--protected-mode", "no"]

    def hash(self, key: str) -> dict[str, str]:
        """HGETALL key, over redis's own protocol (QUIT after it: read to the end)."""
        with socket.create_connection(("127.0.0.1", self.port), 5) as s:
            s.sendall(f"HGETALL {key}\r\nQUIT\r\n".encode())
            got = b""
            while piece := s.recv(65536):
                got += piece
        lines = got.split(b"\r\n")
        count = int(lines[0][1:])
        values = [line.decode() for line in lines[2:2 + 2 * count:2]]
        return dict(zip(values[::2], values[1::2]))


class LearningRspamd(Rspamd):
    """rspamd with its controller worker (learning) and Bayes statistics in redis."""

    def __init__(self, base: Path, redis: Redis):
        super().__init__(base)
        self.redis = redis
        self.controller = f"127.0.0.1:{free_port()}"

    def command(self) -> list[str]:
        cmd = super().command()
        (self.dir / "local" / "local.d" / "classifier-bayes.conf").write_text(
            f'backend = "redis";\nservers = "{self.redis.address}";\nmin_learns = 1;\nautolearn = false;\n')
        conf = self.dir / "rspamd.conf"
        conf.write_text(conf.read_text() + f'worker "controller" {{\n  bind_socket = "{self.controller}";\n'
                        '  count = 1;\n  secure_ip = "127.0.0.1";\n  static_dir = "${WWWDIR}";\n}\n')
        return cmd

    def learned(self) -> dict[str, int]:
        """rspamd's own counts, as `rspamc stat` shows them: {'spam': n, 'ham': n}."""
        counts = self.redis.hash("RS")
        return {"spam": int(counts.get("learns_spam", 0)), "ham": int(counts.get("learns_ham", 0))}


class LearningSpamd(Spamd):
    """spamd that takes TELL (--allow-tell) into a Bayes database of its own."""

    def command(self) -> list[str]:
        cmd = super().command()
        self.site = Path(cmd[1].partition("=")[2])
        bayes = self.site.parent / "bayes"
        bayes.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(bayes, *_nobody())
        (self.site / "local.cf").write_text(f"use_bayes 1\nbayes_auto_learn 0\nskip_rbl_checks 1\n"
                                            f"bayes_path {bayes}/bayes\nbayes_file_mode 0770\n")
        return [*cmd, "--allow-tell"]

    def learned(self) -> dict[str, int]:
        """spamd's own counts (sa-learn --dump magic): {'spam': n, 'ham': n}."""
        out = subprocess.run([SA_LEARN, f"--siteconfigpath={self.site}", "--dump", "magic"], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "HOME": str(self.dir)})
        counts = {"spam": 0, "ham": 0}
        for line in out.stdout.splitlines():
            parts = line.split()
            if parts[-1:] in (["nspam"], ["nham"]):
                counts[parts[-1][1:]] = int(parts[2])
        return counts


def _nobody() -> tuple[int, int]:
    import pwd
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def message(body: bytes = b"Hello Bob,\r\nlunch tomorrow at noon? We could try the new place on the corner.\r\n"
                          b"Cheers, Alice\r\n", subject: str = "lunch") -> bytes:
    return (f"From: alice@far.example\r\nTo: bob@example.com\r\nSubject: {subject}\r\nDate: {formatdate()}\r\n"
            f"Message-ID: <{time.time_ns()}.lunch@far.example>\r\n\r\n").encode() + body


def gtube(subject: str = "buy now") -> bytes:
    return message(b"This is spam.\r\n" + GTUBE + b"\r\n", subject)


class FakeScanner:
    """A loopback TCP server playing a broken scanner: it answers `reply` (garbage of the
    test's choice) after reading a little, or with reply None holds the connection and
    answers nothing (a hung scanner)."""

    def __init__(self, reply: bytes | None):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.reply is None:
                self.held.append(conn)
                continue
            try:
                conn.settimeout(2)
                conn.recv(65536)
                conn.sendall(self.reply)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()
