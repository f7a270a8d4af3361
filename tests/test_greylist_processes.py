"""Greylisting's records are shared by every serving process: a first try answered by one
process is what a retry answered by the other one counts from (`mailctl serve` with
server.processes = 2, connections told apart by the process that holds them). Serving
processes that run as an unprivileged server.user and `mailctl greylist` run by root
use the same records."""
from __future__ import annotations

import json
import os
import shutil
import smtplib
import stat
import tempfile
import time
from pathlib import Path

import pytest

from conftest import reachable_by
from engine import privileges
from helpers_process import smtp_sessions_in_two_processes
from helpers_server import mailctl, make_root, serve_process, wait_for_processes

BOB = "bob@example.com"
DELAY_S = 2.0



def _rcpt(s: smtplib.SMTP, sender: str) -> int:
    s.rset()
    s.ehlo("client.example")
    assert s.mail(sender)[0] == 250
    return s.rcpt(BOB)[0]


def test_two_serving_processes_share_the_records(tmp_path):
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings={
        "server.processes": 2, "queue.offline": True, "greylist.enabled": True,
        "greylist.delay_minutes": DELAY_S / 60, "greylist.whitelist_networks": [], "greylist.spf_bypass": False})
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        one, two = smtp_sessions_in_two_processes(proc.ports["smtp"], proc.proc.pid).values()
        try:
            started = time.monotonic()
            assert _rcpt(one, "carol@far.example") == 451           # carol's first try, in one process
            assert _rcpt(two, "erin@far.example") == 451            # erin's, in the other
            time.sleep(max(0.0, DELAY_S + 0.3 - (time.monotonic() - started)))
            # each process counts from the other's first try: a process that kept its own
            # records would see a first try here and answer 451
            assert _rcpt(two, "carol@far.example") == 250
            assert _rcpt(one, "erin@far.example") == 250
        finally:
            for s in (one, two):
                s.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")
def test_an_unprivileged_server_and_root_s_mailctl_share_the_records():
    base = Path(tempfile.mkdtemp(prefix="mailctl-grey-"))
    os.chmod(base, 0o711)
    try:
        with reachable_by(privileges.ensure_system_user("mailctl-test")) as account:
            root = make_root(base, accounts={BOB: "bob-password-1"}, settings={
                "server.user": account.name, "server.processes": 1, "queue.offline": True, "greylist.enabled": True,
                "greylist.whitelist_networks": [], "greylist.spf_bypass": False})
            privileges.give_root(root.path, account)
            with serve_process(root) as proc:
                wait_for_processes(root, 1)
                with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=20) as s:
                    assert _rcpt(s, "carol@far.example") == 451
                    folder = root.state_dir / "greylist"
                    [record] = list(folder.iterdir())
                    st = os.stat(record)
                    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (account.uid, 0o600)
                    assert os.stat(folder).st_uid == account.uid
                    out = mailctl(root, "greylist", "allow", "127.0.0.1")      # root, becoming the owner
                    assert out.returncode == 0, out.stderr
                    assert {os.stat(p).st_uid for p in folder.iterdir()} == {account.uid}
                    assert _rcpt(s, "dave@far.example") == 250                # the server read root's allow
                    out = mailctl(root, "greylist", "list", "--json")
                    assert out.returncode == 0, out.stderr
                    states = {(r["client"], r["state"]) for r in json.loads(out.stdout)}
                    assert states == {("127.0.0.0/24", "waiting"), ("127.0.0.0/24", "allowed")}
    finally:
        shutil.rmtree(base, ignore_errors=True)
