"""Hostile input and hostile scanners: a clamd that answers garbage, hangs or hangs up, an
external command that prints garbage or never ends: 451 within the timeout and the server
goes on; a real external scanner (clamdscan) and a tiny script; a zip bomb, a 10,000-part
message, a broken base64 attachment and a message of megabytes (scanned from its file)."""
from __future__ import annotations

import base64
import os
import smtplib
import socket
import stat
import threading
import time
import zipfile

import pytest

from helpers_clamav import EICAR, EICAR_NAME, Clamd, clean, with_attachment, zipped
from helpers_mailauth import delivered, send
from helpers_server import make_root, running_server

BOB = "bob@example.com"
UNAVAILABLE = (451, "4.7.1 Virus scanner unavailable, try again later")


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):
    with Clamd(tmp_path_factory.mktemp("clamd")) as c:
        yield c


def av_root(tmp_path, **antivirus):
    values = {"queue.offline": True, "antivirus.enabled": True, "antivirus.timeout_s": 1,
              **{f"antivirus.{k}": v for k, v in antivirus.items()}}
    return make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings=values)


class FakeClamd:
    """A TCP server on loopback that plays a broken clamd: 'garbage', 'hang' or 'hangup'."""

    def __init__(self, how: str):
        self.how = how
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.how == "garbage":
                conn.recv(65536)
                conn.sendall(b"\xff\xfeHELLO? 200 OK\r\n" * 3 + b"\0")
                conn.close()
            elif self.how == "hangup":
                conn.close()
            else:
                self.held.append(conn)        # reads nothing, answers nothing

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.mark.parametrize("how", ["garbage", "hang", "hangup"])
def test_a_broken_clamd_is_451_within_the_timeout_and_the_server_goes_on(tmp_path, how):
    fake = FakeClamd(how)
    root = av_root(tmp_path, clamd=fake.address)
    try:
        with running_server(root) as srv:
            for _ in range(2):
                started = time.monotonic()
                assert send(srv, "alice@far.example", clean()) == UNAVAILABLE
                assert time.monotonic() - started < 3.5
            with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
                assert s.noop()[0] == 250
    finally:
        fake.close()
    assert delivered(root) == []


def script(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_an_external_command_names_the_virus_by_exit_code_and_output(tmp_path):
    seen = tmp_path / "seen"
    scanner = script(tmp_path, "scan.sh", f"""
stat -c '%a %U' "$1" > {seen}
cp "$1" {seen}.eml
if grep -q EICAR "$1"; then echo "$1: Test.Virus-1 FOUND"; exit 6; fi
echo "$1: OK"; exit 0
""")
    root = av_root(tmp_path, clamd="", command=[scanner, "%FILE%"], command_virus_codes=[6])
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", clean("EICAR in clear")) == (
            554, "5.7.1 Rejected: message contains a virus (Test.Virus-1)")
        assert seen.read_text().split()[0] == "600"           # written privately
        assert send(srv, "alice@far.example", clean())[0] == 250
    assert delivered(root)[0]["X-Virus-Scanned"] == "mailctl (scan.sh)"
    assert b"Nothing to see here." in (tmp_path / "seen.eml").read_bytes()
    scan_dir = root.path / "tmp" / f"scan-{os.geteuid()}"
    assert os.listdir(scan_dir) == []                            # nothing left behind
    assert stat.S_IMODE(os.stat(scan_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(scan_dir.parent).st_mode) == 0o711


def test_a_command_whose_output_names_the_file_only_never_shows_the_path(tmp_path):
    scanner = script(tmp_path, "scan.sh", 'echo "cannot open $1 right now: infected"; exit 1\n')
    root = av_root(tmp_path, clamd="", command=[scanner, "--file=%FILE%"])
    with running_server(root) as srv:
        code, text = send(srv, "alice@far.example", clean())
    assert code == 554 and "message right now: infected" in text and str(root.path) not in text


@pytest.mark.parametrize("body", ["echo 'zzz\\001\\002 garbage'; exit 7\n", "sleep 30\n",
                                  # a child of its own that holds on: the whole group is killed
                                  "exec 1>&-; sleep 30 & echo $! >> {pids}; wait\n"])
def test_an_external_command_that_fails_or_hangs_is_451_within_the_timeout(tmp_path, body):
    pids = tmp_path / "pids"
    scanner = script(tmp_path, "scan.sh", f"echo $$ >> {pids}\n" + body.format(pids=pids))
    root = av_root(tmp_path, clamd="", command=[scanner, "%FILE%"])
    with running_server(root) as srv:
        started = time.monotonic()
        assert send(srv, "alice@far.example", clean()) == UNAVAILABLE
        assert time.monotonic() - started < 3.5
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
            assert s.noop()[0] == 250
    for pid in pids.read_text().split():
        assert wait_gone(pid), pid
    assert os.listdir(root.path / "tmp" / f"scan-{os.geteuid()}") == []


def wait_gone(pid: str, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    return True             # dead, waiting for its (test-runner) parent
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_clamdscan_as_the_external_command(tmp_path, clamd):
    command = ["/usr/bin/clamdscan", f"--config-file={clamd.dir / 'clamd.conf'}", "--no-summary", "--stream",
               "%FILE%"]
    if not os.path.exists(command[0]):
        pytest.skip("clamdscan is not installed")
    root = av_root(tmp_path, clamd="", command=command, timeout_s=20)
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", with_attachment(EICAR)) == (
            554, f"5.7.1 Rejected: message contains a virus ({EICAR_NAME}.UNOFFICIAL)")
        assert send(srv, "alice@far.example", clean())[0] == 250
    assert delivered(root)[0]["X-Virus-Scanned"] == "mailctl (clamdscan)"


def zip_bomb() -> bytes:
    """Ten members of 40 MB of zeros each (400 MB unpacked), in about 400 KB."""
    zeros = bytes(40 * 1024 * 1024)
    import io
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(10):
            z.writestr(f"zeros{i}.bin", zeros)
    return out.getvalue()


def many_parts(n: int) -> bytes:
    parts = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(n))
    return (b"From: a@far.example\r\nTo: bob@example.com\r\nSubject: many\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + parts
            + b"--p\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(EICAR).replace(b"\n", b"\r\n") + b"--p--\r\n")


@pytest.mark.parametrize("action", ["reject", "strip"])
def test_a_zip_bomb_and_a_10000_part_message_do_not_hold_the_server(tmp_path, clamd, action):
    root = av_root(tmp_path, clamd=clamd.socket, timeout_s=10, action=action)
    with running_server(root) as srv:
        started = time.monotonic()
        code, text = send(srv, "alice@far.example", with_attachment(zip_bomb(), "bomb.zip", "application/zip",
                                                                  subject="bomb"))
        assert time.monotonic() - started < 15
        # clamd's limits reached are a verdict (AlertExceedsMax); strip removes the bomb alone
        if action == "reject":
            assert code == 554 and text.startswith("5.7.1 Rejected: message contains a virus (Heuristics.Limits.Exceeded.")
        else:
            assert code == 250
        started = time.monotonic()
        code, text = send(srv, "alice@far.example", many_parts(10_000))
        assert (code, text) == (554, "5.7.1 Rejected: message contains a virus (Heuristics.Limits.Exceeded.MaxFiles)")
        assert time.monotonic() - started < 15
        broken = with_attachment(b"").replace(b"Content-Transfer-Encoding: base64\r\n\r\n",
                                              b"Content-Transfer-Encoding: base64\r\n\r\n=!!not*base64==\r\n")
        assert send(srv, "alice@far.example", broken)[0] == 250
    kept = {m["Subject"]: m for m in delivered(root)}
    assert "many" not in kept
    if action == "strip":
        names = [p.get_filename() for p in kept["bomb"].walk() if p.get_filename()]
        assert names == ["bomb.zip.txt"]


def test_a_message_of_megabytes_is_scanned_from_its_file_and_stripped(tmp_path, clamd):
    """Past 2 MB DATA goes to a file (engine/largemsg.py): the scan streams it in pieces."""
    padding = zipped({"big.bin": os.urandom(3 * 1024 * 1024)})
    message = with_attachment(padding, "big.zip", "application/zip").replace(
        b"--b-1--\r\n", b"--b-1\r\nContent-Type: application/octet-stream; name=\"x.com\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(EICAR).replace(b"\n", b"\r\n")
        + b"--b-1--\r\n")
    root = av_root(tmp_path, clamd=clamd.tcp, timeout_s=10)
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", message)[0] == 554
    strip_root = av_root(tmp_path / "strip", clamd=clamd.tcp, timeout_s=10, action="strip")
    with running_server(strip_root) as srv:
        assert send(srv, "alice@far.example", message)[0] == 250
    [m] = delivered(strip_root)
    names = [p.get_filename() for p in m.walk() if p.get_filename()]
    assert names == ["big.zip", "x.com.txt"]
    assert [p for p in m.walk() if p.get_filename() == "big.zip"][0].get_payload(decode=True) == padding


def test_stripping_part_by_part_keeps_to_one_timeout(tmp_path):
    """A slow scanner and many parts: strip gives up at timeout_s (the message is refused)
    instead of taking timeout_s for every part."""
    scanner = script(tmp_path, "slow.sh", 'sleep 0.4; if grep -q VIRUS "$1"; then echo "$1: Slow.Virus FOUND"; '
                                          'exit 1; fi; exit 0\n')
    root = av_root(tmp_path, clamd="", command=[scanner, "%FILE%"], action="strip", timeout_s=1)
    parts = b"".join(b"--p\r\nContent-Type: application/octet-stream\r\n\r\nVIRUS %d\r\n" % i for i in range(10))
    message = (b"From: a@far.example\r\nTo: bob@example.com\r\nSubject: slow\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + parts + b"--p--\r\n")
    with running_server(root) as srv:
        started = time.monotonic()
        assert send(srv, "alice@far.example", message) == (
            554, "5.7.1 Rejected: message contains a virus (Slow.Virus)")
        assert time.monotonic() - started < 3.0
    assert delivered(root) == []


def test_clamd_and_a_command_together_both_must_say_clean(tmp_path, clamd):
    scanner = script(tmp_path, "scan.sh", 'if grep -q Subject:.flagged "$1"; then echo "$1: Cmd.Virus FOUND"; exit 1; fi\n')
    root = av_root(tmp_path, clamd=clamd.socket, command=[scanner, "%FILE%"], header=False, on_failure="accept")
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", with_attachment(EICAR))[0] == 554            # clamd's
        assert send(srv, "alice@far.example", clean("flagged")) == (
            554, "5.7.1 Rejected: message contains a virus (Cmd.Virus)")                    # the command's
        assert send(srv, "alice@far.example", clean("fine"))[0] == 250
        clamd.stop()
        try:
            assert send(srv, "alice@far.example", clean("unscanned"))[0] == 250
        finally:
            clamd.start()
    kept = {m["Subject"]: m for m in delivered(root)}
    assert kept["fine"]["X-Virus-Scanned"] is None                     # header = false
    assert kept["unscanned"]["X-Virus-Scanned"] == "not scanned (scanner unavailable)"     # always said
    both = av_root(tmp_path / "both", clamd=clamd.socket, command=[scanner, "%FILE%"])
    with running_server(both) as srv:
        assert send(srv, "alice@far.example", clean("fine"))[0] == 250
    assert delivered(both)[0]["X-Virus-Scanned"] == "mailctl (ClamAV, scan.sh)"
