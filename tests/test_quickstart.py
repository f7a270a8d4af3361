"""mailctl quickstart through the real CLI: the client settings it prints (POP3 with
STARTTLS included, and working), and --high-ports run as root."""
from __future__ import annotations

import os
import poplib
import re
import signal
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


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.stdout.close()


def test_client_settings_include_pop3_starttls_and_it_works(tmp_path):
    proc, text = start_quickstart([sys.executable, "-m", "mailctl", "--root", str(tmp_path / "mailroot"),
                                   "quickstart", "--any-port"])
    try:
        assert "Serving in the foreground" in text, text
        pop3 = text.split("Incoming mail (POP3)")[1].split("Outgoing")[0]
        assert re.search(r"localhost port \d+, SSL/TLS", pop3)
        port = int(re.search(r"or port (\d+), STARTTLS", pop3).group(1))
        user = re.search(r"User name\s+(\S+)", text).group(1)
        password = re.search(r"Password\s+(\S+)", text).group(1)
        client = poplib.POP3("127.0.0.1", port, timeout=20)
        try:
            client.stls(context=tls_context())
            client.user(user)
            client.pass_(password)
            assert client.stat()[0] == 0
        finally:
            client.quit()
    finally:
        stop(proc)


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
        stop(proc)
    assert "port = 2525" in (target / "mailctl.toml").read_text()
