"""SMTP intake leaves IMAP UIDs to the reader's next sync (no uidlist dotlock per message,
as for any MTA writing into a Maildir): our sync and Dovecot then agree on them."""
from __future__ import annotations

import imaplib
import re
import smtplib
import threading

from engine.maildir import Maildir
from helpers_server import make_root, running_server
from tests.dovecot import dovecot_server

PW = "alice-password-1"


def _send(port: int, subjects: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port) as s:
        for subject in subjects:
            s.sendmail("x@far.example", ["alice@example.com"], f"Subject: {subject}\r\n\r\nbody\r\n")


def test_concurrent_smtp_deliveries_get_uids_at_sync_and_dovecot_agrees(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PW}, settings={"queue.offline": True})
    with running_server(root) as srv:
        threads = [threading.Thread(target=_send, args=(srv.ports["smtp"], [f"t{t}-{i}" for i in range(5)]))
                   for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    box = Maildir.for_account(root, "example.com", "alice")
    uidlist = box.path / "dovecot-uidlist"
    assert len(uidlist.read_text().splitlines()) == 1          # header only: nothing assigned yet
    assert len(list((box.path / "new").iterdir())) == 20      # yet every message is there
    msgs = box.folder("INBOX").sync()
    assert sorted(m.uid for m in msgs) == list(range(1, 21))
    ours = {int(line.split()[0]) for line in uidlist.read_text().splitlines()[1:]}
    assert ours == set(range(1, 21))
    with dovecot_server(root.path, {"alice@example.com": PW}) as server:
        imap = imaplib.IMAP4(server.host, server.imap_port)
        imap.login("alice@example.com", PW)
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK" and int(data[0]) == 20
        typ, data = imap.uid("FETCH", "1:*", "(UID)")
        uids = {int(m) for m in re.findall(rb"UID (\d+)", b" ".join(data))}
        assert uids == ours
        imap.logout()


def test_dovecot_assigns_uids_first_and_our_sync_keeps_them(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PW}, settings={"queue.offline": True})
    with running_server(root) as srv:
        _send(srv.ports["smtp"], [f"m{i}" for i in range(3)])
    with dovecot_server(root.path, {"alice@example.com": PW}) as server:
        imap = imaplib.IMAP4(server.host, server.imap_port)
        imap.login("alice@example.com", PW)
        imap.select("INBOX")
        typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        theirs = re.findall(rb"UID (\d+) BODY\[HEADER\.FIELDS \(SUBJECT\)\] \{\d+\}", b" ".join(
            x[0] if isinstance(x, tuple) else x for x in data))
        imap.logout()
    assert sorted(int(u) for u in theirs) == [1, 2, 3]
    msgs = Maildir.for_account(root, "example.com", "alice").folder("INBOX").sync()
    assert sorted(m.uid for m in msgs) == [1, 2, 3]
