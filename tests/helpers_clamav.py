"""A real clamd (Debian's clamav-daemon) for the virus-scanning tests, with a signature
database written here (no download): the EICAR test file, and one signature of our own
for a test attachment. Also the messages the tests send.

    with Clamd(tmp_path) as clamd:      # started, listening on a unix socket and a TCP port
        clamd.socket, clamd.tcp         # "/.../clamd.sock", "127.0.0.1:NNNN"
        clamd.stop(); clamd.start()     # down and back, as the tests need
"""
from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import time
import zipfile
from email.utils import formatdate
from pathlib import Path

import pytest

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MARKER = b"MAILCTL-TEST-VIRUS-MARKER-7f3a9c"      # our own signature's bytes
EICAR_NAME = "Eicar-Test-Signature"
MARKER_NAME = "Mailctl-Test-Marker"
CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Clamd:
    def __init__(self, base: Path):
        self.dir = Path(base) / "clamd"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.dir / "clamd.sock")
        self.port = free_port()
        self.tcp = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        # .ndb: name:target:offset:hex bytes (target 0 = any file); ClamAV adds .UNOFFICIAL
        (self.dir / "mailctl-test.ndb").write_text(
            f"{EICAR_NAME}:0:0:{EICAR.hex()}\n{MARKER_NAME}:0:*:{MARKER.hex()}\n")
        (self.dir / "clamd.conf").write_text(
            f"Foreground yes\nDatabaseDirectory {self.dir}\nLocalSocket {self.socket}\n"
            f"TCPSocket {self.port}\nTCPAddr 127.0.0.1\nStreamMaxLength 30M\nMaxFiles 10000\n"
            # a limit reached is a verdict (Heuristics.Limits.Exceeded), not "clean": as we advise
            f"AlertExceedsMax yes\n"
            f"LogFile {self.dir / 'clamd.log'}\nSelfCheck 0\n")

    def start(self, timeout: float = 30) -> "Clamd":
        if not os.path.exists(CLAMD):
            pytest.skip("clamd is not installed (Debian package clamav-daemon)")
        self.proc = subprocess.Popen([CLAMD, "-c", str(self.dir / "clamd.conf")], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clamd exited {self.proc.returncode}: "
                                   f"{(self.dir / 'clamd.log').read_text(errors='replace')[-2000:]}")
            if self.answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("clamd did not start in time")

    def answers(self) -> bool:
        for family, where in ((socket.AF_UNIX, self.socket), (socket.AF_INET, ("127.0.0.1", self.port))):
            try:
                with socket.socket(family) as s:
                    s.settimeout(1)
                    s.connect(where)
                    s.sendall(b"zPING\0")
                    if s.recv(16) != b"PONG\0":
                        return False
            except OSError:
                return False
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        try:
            return (self.dir / "clamd.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> "Clamd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- messages --------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode().replace("\n", "\r\n")


def with_attachment(payload: bytes, name: str = "eicar.com", ctype: str = "application/octet-stream",
                    subject: str = "see attached", boundary: str = "b-1") -> bytes:
    return (f"From: alice@far.example\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
            f"Date: {formatdate()}\r\nMessage-ID: <{time.time_ns()}@far.example>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob, see attached.\r\n"
            f"--{boundary}\r\nContent-Type: {ctype}; name=\"{name}\"\r\n"
            f"Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            f"{_b64(payload)}--{boundary}--\r\n").encode()


def zipped(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


def nested(inner: bytes) -> bytes:
    """A message forwarding `inner` as a message/rfc822 attachment."""
    return (f"From: carol@far.example\r\nTo: bob@example.com\r\nSubject: Fwd: see attached\r\n"
            f"Date: {formatdate()}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
            f"--outer\r\nContent-Type: text/plain\r\n\r\nForwarded below.\r\n"
            f"--outer\r\nContent-Type: message/rfc822\r\n\r\n").encode() + inner + b"\r\n--outer--\r\n"


def clean(subject: str = "hello") -> bytes:
    return (f"From: alice@far.example\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
            f"Date: {formatdate()}\r\nMessage-ID: <{time.time_ns()}@far.example>\r\n\r\n"
            f"Nothing to see here.\r\n").encode()
