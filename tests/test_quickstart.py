"""mailctl quickstart through the real CLI: the client settings it prints work as printed
(POP3 with STARTTLS included), and --high-ports run as root."""
from __future__ import annotations

import os
import poplib
import re
import signal
import smtplib
import subprocess
import sys
import time

import pytest

from conftest import run_cli
from helpers_server import REPO, tls_context


def start_quickstart(cmd: list[str]) -> tuple[subprocess.Popen, str]:
    """Start a quickstart and read its output up to the line saying it serves."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=str(REPO),
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    text = ""
    deadline = time.monotonic() + 60
    while "Serving in the foreground" not in text and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        text += line
    return proc, text


def stop(proc: subprocess.Popen) -> int:
    """SIGTERM, as Ctrl-C's sibling; the exit status of a graceful stop."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(40)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def send(port: int, rcpt: str) -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        return s.sendmail("x@foreign.org", [rcpt], b"Subject: hi\r\n\r\nhello\r\n")


def test_quickstart_serves_demo_account(tmp_path):
    """The demo account works as printed: MX on 25, submission with STARTTLS, POP3 with STLS."""
    target = tmp_path / "mailroot"
    proc, text = start_quickstart([sys.executable, "-m", "mailctl", "--root", str(target), "quickstart",
                                   "--any-port"])
    try:
        assert "Serving in the foreground" in text, text
        password = re.search(r"Password\s+(\S+)", text).group(1)
        user = re.search(r"User name\s+(\S+)", text).group(1)
        assert user == "demo@example.test"
        assert re.search(r"Outgoing mail \(SMTP\)\s+localhost port \d+, SSL/TLS", text)
        smtp_port = int(re.search(r"Inbound MX \(SMTP\)\s+localhost port (\d+)", text).group(1))
        assert send(smtp_port, user) == {}
        sub_port = int(re.search(r"or port (\d+), STARTTLS", text.split("Outgoing")[1]).group(1))
        with smtplib.SMTP("127.0.0.1", sub_port, timeout=10) as s:
            s.starttls(context=tls_context())
            s.login(user, password)
            assert s.sendmail(user, [user], f"From: {user}\r\nSubject: self\r\n\r\nhi\r\n".encode()) == {}
        new = target / "mail" / "example.test" / "demo" / "new"
        assert len(os.listdir(new)) == 2
        pop3 = text.split("Incoming mail (POP3)")[1].split("Outgoing")[0]
        assert re.search(r"localhost port \d+, SSL/TLS", pop3)
        pop3_port = int(re.search(r"or port (\d+), STARTTLS", pop3).group(1))
        client = poplib.POP3("127.0.0.1", pop3_port, timeout=20)
        try:
            client.stls(context=tls_context())
            client.user(user)
            client.pass_(password)
            assert client.stat()[0] == 2
        finally:
            client.quit()
    finally:
        assert stop(proc) == 0


def test_high_ports_is_offered_and_used_as_root(tmp_path):
    help_text = run_cli(None, "quickstart", "--help").out
    assert "--high-ports" in help_text and "--any-port" not in help_text
    if os.geteuid() != 0:
        pytest.skip("--high-ports matters only to root (others always get unprivileged ports)")
    # a network namespace of its own: the fixed ports bind to nothing outside it and
    # collide with nobody else's server
    target = tmp_path / "mailroot"
    proc, text = start_quickstart(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                                   sys.executable, "-m", "mailctl", "--root", str(target), "quickstart",
                                   "--high-ports"])
    try:
        assert "Serving in the foreground" in text, text
        for row in (r"Incoming mail \(IMAP\)\s+localhost port 2993, SSL/TLS", r"or port 2143, STARTTLS",
                    r"Incoming mail \(POP3\)\s+localhost port 2995, SSL/TLS", r"or port 2110, STARTTLS",
                    r"Outgoing mail \(SMTP\)\s+localhost port 2465, SSL/TLS", r"or port 2587, STARTTLS",
                    r"Inbound MX \(SMTP\)\s+localhost port 2525"):
            assert re.search(row, text), (row, text)
    finally:
        assert stop(proc) == 0
    assert "port = 2525" in (target / "mailctl.toml").read_text()
