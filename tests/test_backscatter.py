"""No backscatter: on port 25 a full mailbox is refused during the dialogue (at RCPT when
it is full already, at the end of DATA for the whole transaction when the message would
take it past the quota grace), so no bounce ever goes to a sender nobody vouched for."""
from __future__ import annotations

import smtplib

from engine import directory_edit, settings as settings_mod
from engine.maildir import Maildir
from engine.queue import Queue
from helpers_server import make_root, running_server

KB = 1024


def _message(size: int) -> bytes:
    return b"From: victim@third.party\r\nSubject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * (size // 1000)


def test_a_transaction_to_a_nearly_full_mailbox_queues_no_bounce(tmp_path):
    root = make_root(tmp_path, accounts={"bob@example.com": "bob-password-1", "carol@example.com": "carol-password-1"},
                     settings={"queue.offline": True})
    directory_edit.set_account(root, settings_mod.load(root.config_file), "bob@example.com", quota_mb=1)
    bob = Maildir.for_account(root, "example.com", "bob")
    carol = Maildir.for_account(root, "example.com", "carol")
    bob.deliver(b"Subject: filler\n\n" + b"x" * (900 * KB) + b"\n", check_quota=False)
    with running_server(root) as srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
            s.ehlo("mx.third.party")
            # 900 KB + 300 KB is past bob's 1 MB and its 10 % grace: the whole transaction is refused
            assert s.mail("victim@third.party")[0] == 250
            assert s.rcpt("bob@example.com")[0] == 250
            assert s.rcpt("carol@example.com")[0] == 250
            code, reply = s.data(_message(300 * KB))
            assert (code, reply[:5]) == (452, b"4.2.2"), reply
            # 900 KB + 140 KB fits within the grace: delivered to both
            assert s.mail("victim@third.party")[0] == 250
            assert s.rcpt("bob@example.com")[0] == 250
            assert s.rcpt("carol@example.com")[0] == 250
            assert s.data(_message(140 * KB))[0] == 250
            # bob is full now: refused at RCPT, carol still gets hers
            assert s.mail("victim@third.party")[0] == 250
            assert s.rcpt("bob@example.com") == (452, b"4.2.2 Mailbox Full")
            assert s.rcpt("carol@example.com")[0] == 250
            assert s.data(_message(10 * KB))[0] == 250
    assert Queue(root).all() == []                         # no bounce to victim@third.party
    assert len(bob.folder("INBOX").sync()) == 2            # the filler and the one within grace
    assert len(carol.folder("INBOX").sync()) == 2
