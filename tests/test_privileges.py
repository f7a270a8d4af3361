"""Privilege separation, with a real unprivileged user made by the test set-up: started as
root, the supervisor stays root and every serving process runs as server.user, whose files
are private (0600/0700); mailctl run by root on such a root makes files of that user;
`mailctl init` as root creates the user and gives it the root."""
from __future__ import annotations

import imaplib
import json
import os
import pwd
import shutil
import smtplib
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from engine import privileges
from engine.root import Root
from conftest import reachable_by
from helpers_server import REPO, make_root, mailctl, serve_process, serve_status, tls_context, wait_for_processes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")

USER = "mailctl-test"
PW = "private-pw-1"


@pytest.fixture(scope="module")
def account():
    with reachable_by(privileges.ensure_system_user(USER)) as user:
        yield user


@pytest.fixture
def base():
    """A folder the unprivileged user can pass through (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="mailctl-priv-"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _owned_root(base: Path, account, **settings):
    root = make_root(base, accounts={"alice@example.com": PW},
                     settings={"server.user": account.name, "queue.offline": True, **settings})
    privileges.give_root(root.path, account)
    return root


def _ids(pid: int) -> tuple[list[int], list[int]]:
    """(real, effective, saved, fs uid), (the same for gid) of a process."""
    lines = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    return [int(x) for x in lines["Uid"].split()], [int(x) for x in lines["Gid"].split()]


def _private_and_theirs(path: Path, account, mode: int) -> None:
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (account.uid, account.gid, mode), \
        (path, st.st_uid, st.st_gid, oct(st.st_mode))


def test_serving_processes_run_as_the_mail_user_and_make_private_files(base, account):
    root = _owned_root(base, account, **{"server.processes": 2})
    with serve_process(root) as proc:
        serving = wait_for_processes(root, 2)
        assert _ids(proc.proc.pid)[0] == [0, 0, 0, 0]             # the supervisor stays root
        for pid in serving:
            assert _ids(pid) == ([account.uid] * 4, [account.gid] * 4)
        status = serve_status(root)
        assert status["user"] == "root"
        assert [p["user"] for p in status["serving"]] == [USER, USER]
        assert f"as {USER}" in mailctl(root, "status").stdout
        # SMTP: the message lands in new/, the user's, 0600
        with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=10) as s:
            assert s.sendmail("x@foreign.org", ["alice@example.com"], b"Subject: private\r\n\r\nhi\r\n") == {}
        new = root.mail_dir / "example.com" / "alice" / "new"
        [name] = os.listdir(new)
        _private_and_theirs(new / name, account, 0o600)
        # IMAP reads it and makes folders and messages of the user
        imap = imaplib.IMAP4("127.0.0.1", proc.ports["imap"], timeout=10)
        imap.starttls(tls_context())
        imap.login("alice@example.com", PW)
        assert imap.select("INBOX")[1] == [b"1"]
        assert b"Subject: private" in imap.fetch("1", "(BODY.PEEK[])")[1][0][1]
        assert imap.create("Projects")[0] == "OK"
        assert imap.append("Projects", None, None, b"Subject: kept\r\n\r\nx\r\n")[0] == "OK"
        imap.logout()
        folder = root.mail_dir / "example.com" / "alice" / ".Projects"
        _private_and_theirs(folder, account, 0o700)
        [kept] = [folder / sub / name for sub in ("cur", "new") for name in os.listdir(folder / sub)]
        _private_and_theirs(kept, account, 0o600)
        # submission: the queue's files are private too (umask 077)
        with smtplib.SMTP("127.0.0.1", proc.ports["submission"], timeout=10) as s:
            s.starttls(context=tls_context())
            s.login("alice@example.com", PW)
            s.sendmail("alice@example.com", ["bob@remote.example"], b"From: alice@example.com\r\n\r\nout\r\n")
        [queued] = os.listdir(root.queue_dir / "messages")
        _private_and_theirs(root.queue_dir / "messages" / queued, account, 0o600)
        for run_file in ("control.sock", "control.1.sock", "counts.shm"):
            assert os.stat(root.run_dir / run_file).st_uid == account.uid, run_file
        for run_file in ("ports.toml", "mailctl.pid", "locks/serve.lock"):
            _private_and_theirs(root.run_dir / run_file, account, 0o600)
    _private_and_theirs(root.log_dir / "mailctl.log", account, 0o600)


def test_mailctl_and_sendmail_run_by_root_make_files_of_the_mail_user(base, account):
    root = _owned_root(base, account, **{"server.processes": 1})
    added = mailctl(root, "account", "add", "bob@example.com", "--password-stdin", input="bob-password-1\n")
    assert added.returncode == 0, added.stderr
    _private_and_theirs(root.domain_file("example.com"), account, 0o600)
    started = mailctl(root, "start")                           # the daemon, as root
    assert started.returncode == 0, started.stderr
    try:
        reply = mailctl(root, "status", "--json")            # as the mail user, through its control socket
        assert reply.returncode == 0, reply.stderr
        assert json.loads(reply.stdout)["serving"][0]["user"] == USER
        sent = mailctl(root, "send", "-f", "alice@example.com", "far@remote.example",
                       input="From: alice@example.com\nSubject: queued by root\n\nhello\n")
        assert sent.returncode == 0, sent.stderr
        sendmail = subprocess.run([sys.executable, "-m", "mailctl.sendmail", "--root", str(root.path),
                                   "-f", "alice@example.com", "near@remote.example"],
                                  input=b"Subject: sendmail by root\n\nhello\n", capture_output=True,
                                  cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
        assert sendmail.returncode == 0, sendmail.stderr
        queued = os.listdir(root.queue_dir / "messages")
        assert len(queued) == 2
        for name in queued:
            _private_and_theirs(root.queue_dir / "messages" / name, account, 0o600)
    finally:
        stopped = mailctl(root, "stop")
    assert stopped.returncode == 0, stopped.stderr


def test_init_as_root_creates_the_system_user_and_gives_it_the_root(base, account):
    target = base / "fresh"
    done = mailctl(Root(target), "init", "--domain", "example.org")
    assert done.returncode == 0, done.stderr
    user = pwd.getpwnam("mailctl")                      # server.user's default
    for path in [target, *target.rglob("*")]:
        st = os.lstat(path)
        assert st.st_uid == user.pw_uid, path
        assert stat.S_IMODE(st.st_mode) & 0o077 == 0, (path, oct(st.st_mode))


def test_mailctl_processes_creating_the_system_user_at_once_all_get_it():
    """Several `mailctl init` (or servers' first starts) on a fresh machine at once: one
    useradd makes the user, the others find it made, and every one gets its ids. (Two
    useradds at once both succeed here, the second rewriting the first's ids: three rounds
    of eight, so the race shows.)"""
    code = ("import sys; from engine import privileges; "
            "a = privileges.ensure_system_user(sys.argv[1]); print(a.uid, a.gid)")
    for n in range(3):
        name = f"mailctl-race-{os.getpid()}-{n}"
        try:
            runs = [subprocess.Popen([sys.executable, "-c", code, name], cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for _ in range(8)]
            results = [run.communicate(timeout=60) for run in runs]
            entry = pwd.getpwnam(name)
            for run, (out, err) in zip(runs, results):
                assert run.returncode == 0, err
                assert out.split() == [str(entry.pw_uid), str(entry.pw_gid)]
        finally:
            subprocess.run(["userdel", name], capture_output=True)
            subprocess.run(["groupdel", name], capture_output=True)


def test_a_root_the_mail_user_does_not_own_is_refused_with_the_fix(base, account):
    root = make_root(base, settings={"server.user": account.name})      # still root's
    out = mailctl(root, "serve")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"mailctl: {root.path} belongs to root, but the serving processes run as {USER} (server.user); "
        f"give it the root: chown -R {USER}: {root.path}"]
