"""Hostile configuration files: whatever mailctl.toml or a domain file holds (a directory,
a FIFO, 50,000 nested brackets, invalid UTF-8, nothing at all, a file that comes and
goes), every serving process keeps its last good configuration and keeps watching, and
the CLI says which file and what is wrong in one line."""
from __future__ import annotations

import os
import shlex
import shutil
import smtplib
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import run_mailctl
from helpers_server import REPO, mailctl, make_root, running_server, serve_process, write_settings

CONNECTIONS = 16       # SMTP connections per check: both serving processes get some
RELOAD_WAIT = 1.6      # the watcher polls every second


def rcpt_codes(port: int, rcpts: list[str]) -> set[tuple[int, ...]]:
    """RCPT reply codes of each address, over CONNECTIONS connections (spread over processes)."""
    seen = set()
    for _ in range(CONNECTIONS):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.ehlo("client.example")
            s.mail("x@foreign.example")
            seen.add(tuple(s.rcpt(r)[0] for r in rcpts))
    return seen


def one_line_error(out, file: str) -> None:
    """Exit 1 and one line on stderr that starts with the file's name."""
    err = out.stderr.decode()
    assert out.returncode == 1, (out.returncode, err)
    assert len(err.splitlines()) == 1 and err.removeprefix("mailctl: ").startswith(file + ":"), err


DEEP = "[limits]\nretry = " + "[" * 50_000 + "]" * 50_000 + "\n"


def _as_directory(path):
    path.unlink()
    path.mkdir()


def _as_fifo(path):
    path.unlink()
    os.mkfifo(path)


# name -> (which file, how it is broken)
HOSTILE = {
    "config is a directory": ("config", _as_directory),
    "domain file is a directory": ("domain", _as_directory),
    "domain file is a FIFO": ("domain", _as_fifo),
    "config nested 50,000 deep": ("config", lambda p: p.write_text(DEEP)),
    "domain file not UTF-8": ("domain", lambda p: p.write_bytes(b"enabled = true\n# caf\xe9\xff\n")),
    "config empty": ("config", lambda p: p.write_text("")),
    "domain file empty": ("domain", lambda p: p.write_text("  \n")),
    "config without tables": ("config", lambda p: p.write_text("# mailctl.toml: server settings\n")),
}


def _restore(path, good: bytes) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    path.write_bytes(good)


def test_every_serving_process_survives_hostile_files_and_keeps_the_last_good_version(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": "alice-pass-1", "bob@example.com": "bob-pass-12"},
                     settings={"queue.offline": True, "server.processes": 2, "limits.max_recipients": 2})
    files = {"config": root.config_file, "domain": root.domain_file("example.com")}
    good = {k: p.read_bytes() for k, p in files.items()}
    everyone = ["alice@example.com", "bob@example.com", "nobody@example.com"]
    with serve_process(root) as proc:
        port = proc.ports["smtp"]
        # max_recipients = 2: the third RCPT is refused, so a fall back to the defaults (100) shows
        assert rcpt_codes(port, everyone) == {(250, 250, 452)}
        for name, (which, breakit) in HOSTILE.items():
            breakit(files[which])
            time.sleep(RELOAD_WAIT)
            assert rcpt_codes(port, everyone) == {(250, 250, 452)}, name
            status = mailctl(root, "status")
            assert status.returncode == 0, status.stderr
            shown = "mailctl.toml" if which == "config" else "domains/example.com.toml"
            assert f"  {shown}:" in status.stdout, (name, status.stdout)
            one_line_error(run_mailctl(root, "config", "check"), shown)
            _restore(files[which], good[which])
            time.sleep(RELOAD_WAIT)
        # a domain file that comes and goes between the watcher's stat and its read
        flicker = root.domains_dir / "flicker.example.toml"
        stop = threading.Event()

        def comes_and_goes():
            while not stop.is_set():
                flicker.write_text("enabled = true\n")
                flicker.unlink()
        thread = threading.Thread(target=comes_and_goes)
        thread.start()
        try:
            time.sleep(2.5)
        finally:
            stop.set()
            thread.join()
        # every watcher still runs: a valid edit takes effect in every process
        out = mailctl(root, "account", "disable", "bob@example.com")
        assert out.returncode == 0, out.stderr
        time.sleep(RELOAD_WAIT)
        assert rcpt_codes(port, everyone) == {(250, 550, 550)}
        status = mailctl(root, "status")
        assert "config problems  0" in status.stdout, status.stdout
    log = (root.log_dir / "mailctl.log").read_text()
    assert "Traceback" not in log
    assert "domains/example.com.toml: is a directory, not a file" in log
    assert "mailctl.toml:2: syntax: arrays or inline tables nested too deeply" in log


@pytest.mark.parametrize("state", ["domain file is a directory", "config nested 50,000 deep",
                                   "domain file empty", "config without tables", "domain file is a FIFO"])
@pytest.mark.parametrize("command", [("config", "check"), ("account", "list"), ("domain", "list")])
def test_cli_names_the_file_and_the_problem_in_one_line(root, state, command):
    run_mailctl(root, "domain", "add", "example.com")
    which, breakit = HOSTILE[state]
    breakit(root.config_file if which == "config" else root.domain_file("example.com"))
    one_line_error(run_mailctl(root, *command), "mailctl.toml" if which == "config" else "domains/example.com.toml")


def test_one_broken_domain_file_keeps_its_last_good_version_while_another_takes_effect(tmp_path):
    root = make_root(tmp_path, domains=("example.com", "example.org"), accounts={"alice@example.com": "alice-pass-1"},
                     settings={"queue.offline": True})
    with running_server(root) as srv:
        port = srv.ports["smtp"]
        root.domain_file("example.com").write_text("")          # truncated by a full disk or an editor crash
        org = root.domain_file("example.org")
        org.write_text(org.read_text() + '\n[accounts.dave]\npassword = ""\n')
        time.sleep(RELOAD_WAIT)
        assert rcpt_codes(port, ["alice@example.com", "dave@example.org"]) == {(250, 250)}
        problems = srv.call(srv.service.status)["config_problems"]
        assert problems == ["domains/example.com.toml:1: the file is empty or truncated (a domain file holds at "
                            "least enabled = true); restore it from a backup"], problems


def test_a_host_name_that_would_inject_a_line_is_refused_and_the_greeting_stays_one_line(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": "alice-pass-1"})
    good = root.config_file.read_text()
    with running_server(root) as srv:
        root.config_file.write_text(good.replace("[server]\n", '[server]\nhostname = "bad host\\r\\nX-Injected: y"\n', 1))
        time.sleep(RELOAD_WAIT)
        with socket.create_connection(("127.0.0.1", srv.ports["smtp"]), timeout=10) as s:
            time.sleep(0.3)
            greeting = s.recv(4096)
        assert greeting.startswith(b"220 localhost ") and greeting.count(b"\r\n") == 1, greeting
    out = run_mailctl(root, "config", "check")
    assert out.returncode == 1
    assert b"server.hostname: 'bad host\\r\\nX-Injected: y' contains a line break" in out.stderr, out.stderr


@pytest.mark.parametrize("key, value, problem", [
    ("server.hostname", "mail example.com", "is not a host name"),
    ("server.hostname", "-mail.example.com", "is not a host name"),
    ("queue.helo_name", "helo\x00name", "control character"),
    ("server.postmaster", "postmaster", "must be local@domain"),
    ("queue.source_address", "10.0.0", "is not an IP address"),
    ("smarthost.host", "relay.example.com\nX: y", "control character"),
    ("tls.cert", "", "must not be empty"),
    ("mailbox.default_folders", ["Sent", "Bad\rName"], "control character"),
])
def test_config_check_validates_each_value_against_its_use(tmp_path, key, value, problem):
    root = make_root(tmp_path)
    write_settings(root, {key: value})
    out = run_mailctl(root, "config", "check")
    err = out.stderr.decode()
    assert out.returncode == 1 and f": {key}: " in err and problem in err, err


def test_a_route_host_must_be_a_host_name(root):
    with open(root.config_file, "a") as f:
        f.write('\n[routes."example.org"]\nhost = "mx.example.org\\r\\nRCPT TO:<x@y.z>"\n')
    out = run_mailctl(root, "config", "check")
    assert out.returncode == 1 and b"routes.example.org.host: " in out.stderr, out.stderr


def test_accounts_that_cannot_log_in_are_named_with_a_warning(root):
    run_mailctl(root, "domain", "add", "example.com")
    domain_file = root.domain_file("example.com")
    domain_file.write_text(domain_file.read_text() + '\n[accounts.bob]\npassword = ""\n'
                           '\n[accounts.carol]\npassword = "hunter22"\n')
    out = run_mailctl(root, "config", "check")
    err = out.stderr.decode().splitlines()
    assert out.returncode == 0, err          # a receive-only account is legitimate
    assert err == ["mailctl: warning: domains/example.com.toml: account bob@example.com cannot log in: no "
                   "password set (run mailctl account passwd bob@example.com)",
                   "mailctl: warning: domains/example.com.toml: account carol@example.com cannot log in: "
                   "password is not a hash (run mailctl account passwd carol@example.com)"]
    assert b"configuration ok" in out.stdout


def test_an_account_name_with_a_line_break_is_refused(root):
    run_mailctl(root, "domain", "add", "example.com")
    assert run_mailctl(root, "account", "add", "alice@example.com", "--password-stdin",
                       input="alice-pass-1\n").returncode == 0
    before = root.domain_file("example.com").read_bytes()
    out = run_mailctl(root, "account", "name", "alice@example.com", "Alice\r\nBcc: x@y.z")
    assert out.returncode == 1 and out.stderr.count(b"\n") == 1 and b"accounts.alice.name" in out.stderr, out.stderr
    assert root.domain_file("example.com").read_bytes() == before


@pytest.mark.skipif(not shutil.which("capsh"), reason="needs capsh to drop root's permission override")
def test_a_domain_file_that_cannot_be_read_is_named(root):
    """Permission denied, as root sees it once it gives up CAP_DAC_OVERRIDE."""
    run_mailctl(root, "domain", "add", "example.com")
    root.domain_file("example.com").chmod(0)
    cmd = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "mailctl", "--root", str(root.path), "config", "check"))
    out = subprocess.run(["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", cmd],
                         capture_output=True, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert out.returncode == 1 and out.stderr == b"mailctl: domains/example.com.toml: cannot read: Permission denied\n", \
        out.stderr


def test_domains_replaced_by_a_file_keeps_every_domain(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": "alice-pass-1"}, settings={"queue.offline": True})
    with running_server(root) as srv:
        moved = root.path / "domains.moved"
        root.domains_dir.rename(moved)
        root.domains_dir.write_text("not a directory\n")
        time.sleep(RELOAD_WAIT)
        assert rcpt_codes(srv.ports["smtp"], ["alice@example.com"]) == {(250,)}
        assert srv.call(srv.service.status)["config_problems"] == ["domains/: cannot be listed: Not a directory"]
        root.domains_dir.unlink()
        moved.rename(root.domains_dir)
        time.sleep(RELOAD_WAIT)
        assert srv.call(srv.service.status)["config_problems"] == []
