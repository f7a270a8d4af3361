"""The server as a service: config reload while serving, daemon start/status/reload/stop,
graceful SIGTERM (quickstart: test_quickstart.py)."""
from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import time

from helpers_server import mailctl, make_root, running_server, serve_process

PW = "alice-password-1"


def send(port: int, rcpt: str, subject: str = "hi") -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        return s.sendmail("x@foreign.org", [rcpt], f"Subject: {subject}\r\n\r\nhello\r\n".encode())


def test_account_added_receives_within_2s_and_broken_edit_keeps_serving(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PW}, settings={"queue.offline": True})
    with running_server(root) as srv:
        port = srv.ports["smtp"]
        out = mailctl(root, "account", "add", "newbie@example.com", "--password-stdin", input="newbie-password\n")
        assert out.returncode == 0, out.stderr
        added = time.monotonic()
        while True:
            try:
                assert send(port, "newbie@example.com") == {}
                break
            except smtplib.SMTPRecipientsRefused:
                assert time.monotonic() - added < 2.0, "new account not served within 2 s"
                time.sleep(0.05)
        # a broken hand edit: the server keeps the last good configuration
        domain_file = root.domain_file("example.com")
        good = domain_file.read_text()
        domain_file.write_text(good + "\n[accounts.broken]\nquota_mb = \"lots\"\n")
        time.sleep(1.5)
        assert send(port, "newbie@example.com") == {}
        assert send(port, "alice@example.com") == {}
        problems = srv.call(lambda: _status(srv))["config_problems"]
        assert any(re.match(r"domains/example\.com\.toml:\d+: accounts\.broken\.quota_mb: ", p) for p in problems), problems
        # a broken mailctl.toml too
        cfg = root.config_file.read_text()
        root.config_file.write_text(cfg + "\n[limits]\nmax_recipients = -3\n")
        time.sleep(1.5)
        assert send(port, "alice@example.com") == {}
        root.config_file.write_text(cfg)
        domain_file.write_text(good)
        time.sleep(1.5)
        assert srv.call(lambda: _status(srv))["config_problems"] == []


async def _status(srv):
    return await srv.service.status()


def test_daemon_start_status_reload_stop(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PW},
                     settings={"queue.offline": True, "server.processes": 2})
    out = mailctl(root, "start")
    assert out.returncode == 0, out.stdout + out.stderr
    try:
        pid = int(re.search(r"pid (\d+)", out.stdout).group(1))
        assert (root.run_dir / "mailctl.pid").read_text().strip() == str(pid)
        assert mailctl(root, "start").returncode == 1            # already running
        st = mailctl(root, "status", "--json")
        assert st.returncode == 0, st.stderr
        status = json.loads(st.stdout)
        assert status["pid"] == pid and status["queue_size"] == 0
        names = {entry["name"] for entry in status["listeners"]}
        assert {"smtp", "submission", "submissions"} <= names
        assert send(status["ports"]["smtp"], "alice@example.com") == {}
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with smtplib.SMTP_SSL("127.0.0.1", status["ports"]["submissions"], context=ctx, timeout=10) as s:
            try:
                s.login("alice@example.com", "Wrong-Secret-99")
            except smtplib.SMTPAuthenticationError:
                pass
            s.login("alice@example.com", PW)
            s.sendmail("alice@example.com", ["bob@remote.example"], b"From: alice@example.com\r\n\r\nhi\r\n")
        time.sleep(0.3)
        log = (root.log_dir / "mailctl.log").read_text()
        assert PW not in log and "Wrong-Secret-99" not in log
        line = [ln for ln in log.splitlines() if "user=alice@example.com" in ln and "result=" in ln][-1]
        for part in ("client=127.0.0.1", "listener=submissions", "tls=TLSv1.3", "from=<alice@example.com>",
                     "to=<bob@remote.example>", "size=", "queued as", "queue_id="):
            assert part in line, (part, line)
        human = mailctl(root, "status")
        assert "smtp" in human.stdout and "uptime" in human.stdout
        serving = json.loads(mailctl(root, "status", "--json").stdout)["processes"]
        assert len(serving) == 2 and pid not in serving
        assert f"serving processes {serving[0]}, {serving[1]}" in human.stdout
        assert mailctl(root, "reload").returncode == 0
        os.kill(pid, signal.SIGHUP)                              # SIGHUP reloads too
        time.sleep(0.3)
        assert mailctl(root, "status", "--json").returncode == 0
    finally:
        stop = mailctl(root, "stop")
    assert stop.returncode == 0, stop.stderr
    assert mailctl(root, "status").returncode == 1
    assert "not running" in mailctl(root, "status").stderr
    assert not (root.run_dir / "mailctl.pid").exists()


def test_sigterm_lets_transaction_finish(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PW}, settings={"queue.offline": True})
    with serve_process(root) as proc:
        s = smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=20)
        s.ehlo("client.test")
        s.mail("x@foreign.org")
        s.rcpt("alice@example.com")
        assert s.docmd("DATA")[0] == 354
        s.send(b"Subject: in flight\r\n\r\npart one\r\n")
        proc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        s.send(b"part two\r\n.\r\n")
        code, text = s.getreply()
        assert code == 250, text
        assert proc.proc.wait(20) == 0
    files = os.listdir(root.mail_dir / "example.com" / "alice" / "new")
    assert len(files) == 1


def test_several_serving_processes_share_the_listeners(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PW}, settings={"queue.offline": True})
    with serve_process(root, args=("--processes", "2")) as proc:
        deadline = time.monotonic() + 10
        children = []
        while not children and time.monotonic() < deadline:
            try:
                children = [int(c) for c in open(f"/proc/{proc.proc.pid}/task/{proc.proc.pid}/children").read().split()]
            except OSError:
                pass
            time.sleep(0.1)
            if len(children) < 2:
                children = []
        assert len(children) == 2
        time.sleep(1.0)                       # both serving processes are up
        for i in range(30):
            assert send(proc.ports["smtp"], "alice@example.com", f"m{i}") == {}
        time.sleep(0.3)                       # the last log lines written
    assert len(os.listdir(root.mail_dir / "example.com" / "alice" / "new")) == 30
    log = (root.log_dir / "mailctl.log").read_text()
    assert f"started 2 serving processes: {children[0]}, {children[1]}" in log or \
        f"started 2 serving processes: {children[1]}, {children[0]}" in log
    assert log.count("listening: smtp on") == 1         # the supervisor binds once
    for pid in children:                                  # every process logs to the one file
        assert f"serving process {pid} ready in slot" in log
    assert log.count("queued as") == 30
