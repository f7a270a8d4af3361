"""A recipient accepted at RCPT but refused at DATA gets a DSN (authenticated senders only:
on port 25 such a mailbox refuses the whole transaction, tests/test_backscatter.py); the
others get the message."""
from __future__ import annotations

import email
import smtplib

from engine import directory_edit, settings as settings_mod
from engine.maildir import Maildir
from helpers_server import make_root, running_server, tls_context


def test_mailbox_filled_between_rcpt_and_data_bounces_to_sender(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": "alice-password-1", "bob@example.com": "bob-password-1",
                                         "carol@example.com": "carol-password-1"},
                     settings={"queue.offline": True})
    alice = Maildir.for_account(root, "example.com", "alice")
    directory_edit.set_account(root, settings_mod.load(root.config_file), "alice@example.com", quota_mb=1)
    with running_server(root) as srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=10) as s:
            s.starttls(context=tls_context())
            s.login("carol@example.com", "carol-password-1")
            assert s.mail("carol@example.com")[0] == 250
            assert s.rcpt("alice@example.com")[0] == 250
            assert s.rcpt("bob@example.com")[0] == 250
            # past alice's quota by more than its grace (10 %)
            alice.deliver(b"Subject: filler\n\n" + b"x" * 1_045_000 + b"\n", check_quota=False)
            body = (b"y" * 998 + b"\r\n") * 120
            code, reply = s.data(b"From: carol@example.com\r\nSubject: hello\r\n\r\n" + body)
            assert code == 250, reply
    bob = Maildir.for_account(root, "example.com", "bob").folder("INBOX").sync()
    assert len(bob) == 1
    assert len(alice.folder("INBOX").sync()) == 1          # only the filler
    [dsn_msg] = Maildir.for_account(root, "example.com", "carol").folder("INBOX").sync()
    report = email.message_from_bytes(Maildir.for_account(root, "example.com", "carol").folder("INBOX").read(dsn_msg))
    assert report.get_content_type() == "multipart/report"
    status = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"][0]
    fields = status.get_payload()[1]
    assert fields["Final-Recipient"] == "rfc822; alice@example.com"
    assert fields["Action"] == "failed" and fields["Status"].startswith("5.2.2")


def test_submission_gets_date_and_message_id_added(tmp_path):
    import ssl
    root = make_root(tmp_path, accounts={"alice@example.com": "alice-password-1", "bob@example.com": "bob-password-1"},
                     settings={"queue.offline": True})
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with running_server(root) as srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=10) as s:
            s.starttls(context=ctx)
            s.login("alice@example.com", "alice-password-1")
            s.sendmail("alice@example.com", ["bob@example.com"], b"From: alice@example.com\r\nSubject: bare\r\n\r\nhi\r\n")
            s.sendmail("alice@example.com", ["bob@example.com"],
                       b"From: alice@example.com\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                       b"Message-ID: <keep@example.com>\r\nSubject: full\r\n\r\nhi\r\n")
    box = Maildir.for_account(root, "example.com", "bob").folder("INBOX")
    msgs = {m["Subject"]: m for m in (email.message_from_bytes(box.read(x)) for x in box.sync())}
    assert msgs["bare"]["Message-ID"].endswith("@localhost>") and msgs["bare"]["Date"]
    assert msgs["full"]["Message-ID"] == "<keep@example.com>" and msgs["full"].get_all("Date") == ["Mon, 1 Jan 2024 00:00:00 +0000"]
    assert msgs["bare"].get_payload() == "hi\n"
