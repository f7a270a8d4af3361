"""The supervisor of `mailctl serve`: a serving process killed by anything is replaced while
mail keeps arriving and nothing acknowledged is lost; a crash loop is slowed down; the
serving processes die with the supervisor; a crash's leftovers never stop the next start."""
from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time

import pytest

from engine import control
from helpers_server import REPO, make_root, mailctl, read_ports, serve_process, serve_status, wait_for_processes

PW = "supervised-pw-1"
INBOX = ("example.com", "alice", "new")


class Sender(threading.Thread):
    """Sends one message per connection, without pause, and remembers those answered 250."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.acknowledged: list[str] = []
        self.failures = 0
        self.done = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.done.is_set():
            n += 1
            subject = f"msg-{n}"
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
                    if s.sendmail("x@foreign.org", ["alice@example.com"],
                                  f"Subject: {subject}\r\n\r\nbody\r\n".encode()) == {}:
                        self.acknowledged.append(subject)
            except (OSError, smtplib.SMTPException):
                self.failures += 1          # cut off by the kill: not acknowledged, so not owed


def _subjects(root) -> set[str]:
    folder = root.mail_dir.joinpath(*INBOX)
    out = set()
    for name in os.listdir(folder):
        for line in (folder / name).read_bytes().splitlines():
            if line.startswith(b"Subject: "):
                out.add(line[9:].decode())
    return out


def _greeting_within(port: int, seconds: float) -> bytes:
    """The SMTP banner of a new connection, which must come within seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as s:
        s.settimeout(seconds)
        return s.recv(512)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGBUS])
def test_each_killed_serving_process_is_replaced_while_mail_arrives_and_nothing_acknowledged_is_lost(tmp_path, sig):
    root = make_root(tmp_path, accounts={"alice@example.com": PW},
                     settings={"server.processes": 2, "queue.offline": True})
    with serve_process(root) as proc:
        port = proc.ports["smtp"]
        pids = wait_for_processes(root, 2)
        sender = Sender(port)
        sender.start()
        try:
            for round_, victim in enumerate(list(pids), 1):
                time.sleep(0.5)                            # mail is flowing through both
                os.kill(victim, sig)
                assert _greeting_within(port, 2.0).startswith(b"220"), "the listener stopped answering"
                pids = wait_for_processes(root, 2, timeout=10, without=(victim,))
                status = serve_status(root)
                assert status["restarts"] == round_
                assert status["last_exit"]["pid"] == victim
                assert status["last_exit"]["how"] == f"killed by signal {sig.name}"
            time.sleep(0.5)                                # the replacements take mail too
        finally:
            sender.done.set()
            sender.join(20)
    assert len(sender.acknowledged) > 10, (sender.acknowledged, sender.failures)
    missing = set(sender.acknowledged) - _subjects(root)
    assert not missing, f"acknowledged with 250 but not in the mailbox: {sorted(missing)}"
    log = (root.log_dir / "mailctl.log").read_text()
    assert f"killed by signal {sig.name}" in log and "starting a new one" in log


def test_the_only_serving_process_killed_leaves_connections_waiting_for_its_replacement(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PW},
                     settings={"server.processes": 1, "queue.offline": True})
    with serve_process(root) as proc:
        [victim] = wait_for_processes(root, 1)
        os.kill(victim, signal.SIGKILL)
        # the replacement starts at once (about 0.5 s on an idle machine); a loaded one may take longer
        assert _greeting_within(proc.ports["smtp"], 5.0).startswith(b"220")
        [replacement] = wait_for_processes(root, 1, without=(victim,))
        with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=10) as s:
            assert s.sendmail("x@foreign.org", ["alice@example.com"], b"Subject: after\r\n\r\nx\r\n") == {}
        human = mailctl(root, "status").stdout
        assert f"serving processes {replacement}" in human or f"pid {replacement}" in human or "restarts" in human
        assert f"1 (last: pid {victim} killed by signal SIGKILL)" in human
    assert "after" in _subjects(root)


def test_a_serving_process_that_keeps_dying_at_start_is_restarted_after_growing_pauses(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PW},
                     settings={"server.processes": 1, "queue.offline": True})
    key = root.tls_dir / "key.pem"
    with serve_process(root) as proc:
        [victim] = wait_for_processes(root, 1)
        saved = key.read_bytes()
        key.unlink()                         # a new serving process now fails at start
        os.kill(victim, signal.SIGKILL)
        time.sleep(8)
        restarts = serve_status(root)["restarts"]
        # without pauses a failing start (~0.4 s) would be retried about 20 times in 8 s
        assert 2 <= restarts <= 6, restarts
        key.write_bytes(saved)
        wait_for_processes(root, 1, timeout=30)
        with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=10) as s:
            assert s.noop()[0] == 250
    assert "it keeps dying at start" in (root.log_dir / "mailctl.log").read_text()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "zombie" in f.read()
    except FileNotFoundError:
        return True


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_serving_processes_end_within_2s_when_the_supervisor_is_killed(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PW},
                     settings={"server.processes": 2, "queue.offline": True})
    with serve_process(root) as proc:
        pids = wait_for_processes(root, 2)
        ports = dict(proc.ports)
        proc.kill()                               # SIGKILL the supervisor
        killed = time.monotonic()

        def everything_gone() -> bool:
            # a process's files close when its last thread has exited, which may be a
            # moment after its main thread shows as a zombie
            return all(_gone(p) for p in pids) and all(_port_free(port) for port in ports.values())
        while not everything_gone() and time.monotonic() - killed < 2.0:
            time.sleep(0.05)
        assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p)]
        for name, port in ports.items():
            assert _port_free(port), f"{name} port {port} still taken"


def _serve_in_own_group(root) -> subprocess.Popen:
    """`mailctl serve` in a process group of its own (which a test may signal whole), up."""
    proc = subprocess.Popen([sys.executable, "-m", "mailctl", "--root", str(root.path), "serve"],
                            cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while read_ports(root, proc.pid) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_a_killed_process_group_leaves_nothing_that_stops_the_next_start(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PW},
                     settings={"server.processes": 2, "queue.offline": True})
    proc = _serve_in_own_group(root)
    try:
        wait_for_processes(root, 2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    time.sleep(0.3)
    run = root.run_dir
    for stale in ("control.sock", "control.1.sock", "control.2.sock", "mailctl.pid", "ports.toml", "counts.shm"):
        assert (run / stale).exists(), stale           # what a crash leaves
    assert "not running" in mailctl(root, "status").stderr
    started = mailctl(root, "start")
    assert started.returncode == 0, started.stderr
    try:
        port = serve_status(root)["ports"]["smtp"]
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            assert s.sendmail("x@foreign.org", ["alice@example.com"], b"Subject: again\r\n\r\nx\r\n") == {}
    finally:
        stopped = mailctl(root, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not (run / "control.sock").exists() and not (run / "mailctl.pid").exists()
    with serve_process(root) as again:                  # and in the foreground
        with smtplib.SMTP("127.0.0.1", again.ports["smtp"], timeout=10) as s:
            assert s.noop()[0] == 250


def test_queue_changed_reaches_the_serving_process_that_runs_the_queue(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PW},
                     settings={"server.processes": 2, "queue.offline": True})
    with serve_process(root):
        wait_for_processes(root, 2)
        assert control.request(root, "queue-changed")["woken"] is True     # as mailctl send and sendmail ask
        flushed = mailctl(root, "queue", "flush")
        assert "flush requested from the running server" in flushed.stdout, flushed.stdout + flushed.stderr


def test_serving_processes_that_cannot_start_fail_the_start_with_one_line(tmp_path):
    root = make_root(tmp_path, settings={"server.processes": 2})
    (root.tls_dir / "key.pem").write_text("not a key\n")
    out = mailctl(root, "serve", timeout=40)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1].startswith("mailctl: serving process ")
    assert "exited with status 1 at start; see " in out.stderr.splitlines()[-1]
    assert "Traceback" not in out.stderr
    assert "cannot load TLS certificate/key" in (root.log_dir / "mailctl.log").read_text()
    assert not (root.run_dir / "mailctl.pid").exists() and not (root.run_dir / "control.sock").exists()


def test_ctrl_c_to_the_process_group_stops_everything_without_replacements(tmp_path):
    root = make_root(tmp_path, settings={"server.processes": 2, "queue.offline": True})
    proc = _serve_in_own_group(root)
    try:
        pids = wait_for_processes(root, 2)
        os.killpg(proc.pid, signal.SIGINT)              # what Ctrl-C in a terminal does
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert all(_gone(p) for p in pids)
    assert "starting a new one" not in (root.log_dir / "mailctl.log").read_text()


def test_the_supervisor_rotates_a_log_its_serving_processes_filled(tmp_path, monkeypatch):
    from engine import logs
    from engine.root import Root
    monkeypatch.setattr(logs, "MAX_BYTES", 2000)
    root = Root(tmp_path)
    logs.setup(root, stderr=False, rotate=True)
    try:
        with open(root.log_dir / logs.LOG_NAME, "a") as other:     # another process's lines
            other.write("x" * 3000 + "\n")
        logs.check_size()
    finally:
        logs.stop()
    assert (root.log_dir / f"{logs.LOG_NAME}.1").stat().st_size > 3000
    assert (root.log_dir / logs.LOG_NAME).stat().st_size == 0
