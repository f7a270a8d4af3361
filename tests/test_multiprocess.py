"""Several serving processes (server.processes) behave as one server: limits count across
them, `who` and `status` show all of them, a dead one is replaced, and they share one log."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import smtplib
import socket
import time

from engine import logs
from engine.sharedcounts import SharedCounts
from helpers_server import make_root, mailctl, serve_process, serve_status, wait_for_processes

PW = "multi-process-pw-1"


def _who(root) -> list[dict]:
    out = mailctl(root, "who", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return data["sessions"] if isinstance(data, dict) else data


@contextlib.contextmanager
def two_processes(tmp_path, settings: dict):
    """`mailctl serve` with two serving processes, both up, over a root with alice."""
    root = make_root(tmp_path, accounts={"alice@example.com": PW}, settings={"server.processes": 2, **settings})
    with serve_process(root) as proc:
        proc.pids = wait_for_processes(root, 2)
        yield root, proc


def _greeting(port: int) -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s, s.recv(512)


def _open_across_processes(root, port: int, count: int) -> list[socket.socket]:
    """count SMTP connections that the kernel spread over both processes (retry until it did)."""
    for _ in range(20):
        conns = []
        for _ in range(count):
            s, banner = _greeting(port)
            assert banner.startswith(b"220"), banner
            conns.append(s)
        pids = {sess["pid"] for sess in _who(root) if sess["protocol"] == "smtp"}
        if len(pids) == 2:
            return conns
        for s in conns:
            s.close()
        time.sleep(0.3)
    raise AssertionError("the kernel never spread the connections over both processes")


def test_connection_limit_counts_across_processes_and_who_shows_all(tmp_path):
    with two_processes(tmp_path, {"limits.max_connections_per_ip": 6, "queue.offline": True}) as (root, proc):
        port = proc.ports["smtp"]
        conns = _open_across_processes(root, port, 6)
        assert len(_who(root)) == 6
        assert serve_status(root)["connections"] == 6
        for _ in range(4):                       # whichever process takes it, the count is 6
            s, banner = _greeting(port)
            assert banner.startswith(b"421 4.7.0 Too many connections from your address"), banner
            s.close()
        conns.pop().close()
        deadline = time.monotonic() + 5
        while serve_status(root)["connections"] != 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:   # a free place again
            assert s.sendmail("x@foreign.org", ["alice@example.com"], b"Subject: hi\r\n\r\nhi\r\n") == {}
        for s in conns:
            s.close()


def test_messages_per_minute_count_across_processes(tmp_path):
    with two_processes(tmp_path, {"limits.messages_per_ip_per_minute": 5, "queue.offline": True}) as (root, proc):
        results = []
        for _i in range(12):
            with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=10) as s:
                s.ehlo()
                results.append(s.mail("x@foreign.org")[0])
        assert results[:5] == [250] * 5
        assert results[5:] == [450] * 7, results
    assert len(os.listdir(root.mail_dir / "example.com" / "alice" / "new")) == 0


def test_a_dead_serving_process_is_replaced_and_its_counts_forgotten(tmp_path):
    with two_processes(tmp_path, {"queue.offline": True}) as (root, proc):
        survivor, secondary = proc.pids
        assert proc.proc.pid not in proc.pids             # the supervisor serves nothing itself
        conns = _open_across_processes(root, proc.ports["smtp"], 8)
        in_survivor = sum(1 for s in _who(root) if s["pid"] == survivor)
        os.kill(secondary, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            status = serve_status(root)
            if len(status["processes"]) == 2 and secondary not in status["processes"]:
                break
            time.sleep(0.2)
        assert secondary not in status["processes"] and len(status["processes"]) == 2, status
        assert status["connections"] == in_survivor      # the dead one's connections not counted
        for s in conns:
            s.close()
        time.sleep(0.5)
        for _i in range(10):                                # both serve mail
            with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=10) as s:
                assert s.sendmail("x@foreign.org", ["alice@example.com"], b"Subject: m\r\n\r\nm\r\n") == {}
    assert len(os.listdir(root.mail_dir / "example.com" / "alice" / "new")) == 10
    text = (root.log_dir / "mailctl.log").read_text()
    assert f"serving process {secondary} (slot 2) killed by signal SIGKILL" in text


def test_shared_counts_add_up_slots_and_forget_a_cleared_one(tmp_path):
    primary = SharedCounts.create(tmp_path)
    other = SharedCounts.attach(tmp_path, 1)
    primary.opened("smtp", "192.0.2.1")
    other.opened("smtp", "192.0.2.1")
    other.opened("imap", "192.0.2.1")
    other.user_added("imap", "Bob@Example.com")
    assert primary.total(("smtp",)) == 2 and primary.total() == 3
    assert primary.count_ip(("smtp",), "192.0.2.1") == 2
    assert primary.count_ip(("smtp",), "192.0.2.2") == 0
    assert primary.count_user(("imap", "pop3"), "bob@example.com") == 1
    primary.clear_slot(1)
    assert primary.total() == 1 and primary.count_user(("imap",), "bob@example.com") == 0
    other.closed("smtp", "192.0.2.1")          # a late close never goes below zero
    assert primary.count_ip(("smtp",), "192.0.2.1") == 1
    other.close()
    primary.close()


def test_shared_message_rate_window_moves_with_the_minute(tmp_path):
    now = [6000.0]                              # the start of a minute
    a = SharedCounts.create(tmp_path, clock=lambda: now[0])
    b = SharedCounts.attach(tmp_path, 1, clock=lambda: now[0])
    assert [a.hit("m 192.0.2.1") for _ in range(3)] == [1, 2, 3]
    assert b.hit("m 192.0.2.1") == 4
    assert a.recent("m 192.0.2.9") == 0
    now[0] += 90                                 # half into the next minute: half of the 4 still count
    assert a.recent("m 192.0.2.1") == 2
    now[0] += 60                                 # two minutes on: nothing left
    assert a.recent("m 192.0.2.1") == 0 and b.hit("m 192.0.2.1") == 1
    a.close()
    b.close()


def test_log_writers_of_two_processes_share_the_file_and_follow_rotation(tmp_path, monkeypatch):
    import queue
    monkeypatch.setattr(logs, "MAX_BYTES", 2000)
    path = tmp_path / "mailctl.log"
    primary = logs.LogWriter(queue.SimpleQueue(), path, stderr=False, rotate=True)
    other = logs.LogWriter(queue.SimpleQueue(), path, stderr=False, rotate=False)
    import logging

    def record(text):
        return logging.LogRecord("mailctl", logging.INFO, __file__, 1, text, None, None)
    for i in range(30):
        primary._write([record(f"primary line {i} " + "x" * 40)])
        other._write([record(f"other line {i} " + "y" * 40)])
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert "mailctl.log.1" in rotated and "mailctl.log.6" not in rotated
    every = "".join(p.read_text() for p in tmp_path.iterdir())
    assert every.count("other line 29") == 1 and every.count("primary line 29") == 1
    assert "other line 29" in path.read_text()          # the follower writes to the new file
    for w in (primary, other):
        os.close(w.fd)


def test_imap_sessions_per_user_count_across_processes(tmp_path):
    import imaplib
    with two_processes(tmp_path, {"mailbox.max_sessions_per_user": 3, "auth.allow_plaintext": True}) as (root, proc):
        for _ in range(20):
            clients = []
            for _ in range(3):
                c = imaplib.IMAP4("127.0.0.1", proc.ports["imap"], timeout=10)
                c.login("alice@example.com", PW)
                clients.append(c)
            if len({s["pid"] for s in _who(root) if s["user"] == "alice@example.com"}) == 2:
                break
            for c in clients:
                c.logout()
            time.sleep(0.3)
        else:
            raise AssertionError("the kernel never spread the sessions over both processes")
        for _ in range(4):                  # whichever process takes it, alice has 3 already
            c = imaplib.IMAP4("127.0.0.1", proc.ports["imap"], timeout=10)
            try:
                c.login("alice@example.com", PW)
                raise AssertionError("a fourth session was let in")
            except imaplib.IMAP4.error as e:
                assert "LIMIT" in str(e)
            c.logout()
        for c in clients:
            c.logout()


def test_keys_sharing_a_bucket_in_one_row_keep_their_own_counts(tmp_path):
    """Two IPs of equal length that fall into the same bucket of the first row still
    count apart (the second row's hash is independent)."""
    from engine import sharedcounts
    seen = {}
    for i in range(5000):
        ip = f"10.{100 + i // 150}.{100 + i % 150}.1"    # all the same length
        bucket = sharedcounts._buckets(f"smtp ip {ip}")[0]
        if bucket in seen:
            a, b = seen[bucket], ip
            break
        seen[bucket] = ip
    counts = SharedCounts.create(tmp_path)
    for _ in range(15):
        counts.opened("smtp", a)
    counts.opened("smtp", b)
    assert counts.count_ip(("smtp",), a) == 15 and counts.count_ip(("smtp",), b) == 1
    counts.close()
