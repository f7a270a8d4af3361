"""Access data changed by the command line reaches every serving process at once, without
a restart or reload: `mailctl serve` with server.processes = 2, sessions opened in each
process (told apart by the process holding the connection), then `mailctl ban add` and
`mailctl access add` run as separate processes."""
from __future__ import annotations

import base64
import smtplib

from helpers_process import smtp_sessions_in_two_processes
from helpers_server import mailctl, make_root, serve_process, wait_for_processes

BOB, PASSWORD = "bob@example.com", "bob-password-1"



def auth_plain(s: smtplib.SMTP) -> int:
    s.ehlo("client.example")
    blob = base64.b64encode(f"\0{BOB}\0{PASSWORD}".encode()).decode()
    return s.docmd("AUTH", f"PLAIN {blob}")[0]


def test_a_ban_and_an_access_entry_from_the_cli_reach_both_processes(tmp_path):
    root = make_root(tmp_path, accounts={BOB: PASSWORD}, settings={
        "server.processes": 2, "queue.offline": True, "auth.allow_plaintext": True})
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        top = proc.proc.pid
        # earlier bans and entries, read by both processes before the changes below
        assert mailctl(root, "ban", "add", "127.0.79.9").returncode == 0
        assert mailctl(root, "access", "add", "recipient", "nobody@far.example").returncode == 0
        banned = list(smtp_sessions_in_two_processes(proc.ports["submission"], top, "127.0.71.1").values())
        inbound = list(smtp_sessions_in_two_processes(proc.ports["smtp"], top, "127.0.72.1").values())
        try:
            r = mailctl(root, "ban", "add", "127.0.71.1", "--minutes", "30")
            assert r.returncode == 0, r.stderr
            for s in banned:              # each process refuses the right password now
                assert auth_plain(s) == 421
            for _ in range(6):
                try:
                    smtplib.SMTP("127.0.0.1", proc.ports["submission"], timeout=20,
                                 source_address=("127.0.71.1", 0)).close()
                    raise AssertionError("a banned client was greeted")
                except smtplib.SMTPConnectError as e:
                    assert e.smtp_code == 554
            r = mailctl(root, "access", "add", "recipient", BOB)
            assert r.returncode == 0, r.stderr
            for s in inbound:
                s.ehlo("client.example")
                assert s.mail("carol@far.example")[0] == 250
                assert s.rcpt(BOB)[0] == 550
            r = mailctl(root, "access", "remove", BOB)
            assert r.returncode == 0, r.stderr
            for s in inbound:
                assert s.rcpt(BOB)[0] == 250
        finally:
            for s in banned + inbound:
                s.close()
