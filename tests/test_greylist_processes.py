"""Greylisting's records are shared by every serving process: a first try answered by one
process is what a retry answered by the other one counts from (`mailctl serve` with
server.processes = 2, connections told apart by the process that holds them)."""
from __future__ import annotations

import smtplib
import time

from helpers_process import serving_pid
from helpers_server import make_root, serve_process, wait_for_processes

BOB = "bob@example.com"
DELAY_S = 2.0


def _sessions_in_both(port: int, top: int) -> dict[int, smtplib.SMTP]:
    """One open SMTP session in each serving process (retried until the kernel spread them)."""
    found: dict[int, smtplib.SMTP] = {}
    spare = []
    for _ in range(60):
        s = smtplib.SMTP("127.0.0.1", port, timeout=20)
        pid = serving_pid(s.sock, top)
        if pid in found:
            spare.append(s)
        else:
            found[pid] = s
        if len(found) == 2:
            break
    for s in spare:
        s.close()
    assert len(found) == 2, "the kernel never spread the connections over both processes"
    return found


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
        one, two = _sessions_in_both(proc.ports["smtp"], proc.proc.pid).values()
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
