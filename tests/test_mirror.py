"""Mirror addresses (`mirror = "..."` in a domain's file, `mailctl domain set --mirror`): a
copy of every message to or from the domain, through real SMTP (port 25 and submission),
in the same delivery; none for other domains; one copy when both ends are mirrored; a
mirror that cannot take mail is logged, never bounced to the sender."""
from __future__ import annotations

import smtplib
import ssl

from engine.queue import Queue
from helpers_server import mailctl, make_root, running_server
from test_sieve_delivery import subjects

PEOPLE = {"bob@example.com": "bob-password-1", "archive@example.com": "archive-password-1",
          "cy@other.example": "cy-password-123"}


def mail(sender: str, to: str, subject: str) -> bytes:
    return f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhello\r\n".encode()


def archived(root) -> list[str]:
    from engine.maildir import Maildir
    import email
    box = Maildir.for_account(root, "example.com", "archive").folder("INBOX")
    return sorted(email.message_from_bytes(box.read(m))["Subject"] for m in box.sync())


def test_every_message_to_or_from_the_domain_is_mirrored_once(tmp_path):
    root = make_root(tmp_path, domains=("example.com", "other.example"), accounts=PEOPLE,
                     settings={"queue.offline": True})
    done = mailctl(root, "domain", "set", "example.com", "--mirror", "archive@example.com")
    assert done.returncode == 0, done.stderr
    assert mailctl(root, "domain", "set", "example.com", "--mirror", "not an address").returncode != 0
    with running_server(root) as srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
            s.sendmail("carol@far.example", ["bob@example.com"], mail("carol@far.example", "bob", "inbound"))
            s.sendmail("carol@far.example", ["cy@other.example"], mail("carol@far.example", "cy", "elsewhere"))
            s.sendmail("carol@far.example", ["bob@example.com", "archive@example.com"],
                       mail("carol@far.example", "both", "already there"))
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as s:
            s.starttls(context=ssl._create_unverified_context())
            s.login("bob@example.com", PEOPLE["bob@example.com"])
            s.sendmail("bob@example.com", ["dave@far.example", "cy@other.example"],
                       mail("bob@example.com", "dave", "outbound"))
    assert archived(root) == ["already there", "inbound", "outbound"]
    assert subjects(root, "INBOX") == ["already there", "inbound"]
    [queued] = Queue(root).all()
    assert [r.address for r in queued.recipients] == ["dave@far.example"]


def test_a_mirror_that_cannot_take_mail_is_logged_not_bounced(tmp_path, caplog):
    root = make_root(tmp_path, domains=("example.com", "other.example"), accounts=PEOPLE,
                     settings={"queue.offline": True})
    assert mailctl(root, "domain", "set", "example.com", "--mirror", "gone@example.com").returncode == 0
    with running_server(root) as srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as s:
            s.starttls(context=ssl._create_unverified_context())
            s.login("bob@example.com", PEOPLE["bob@example.com"])
            assert s.sendmail("bob@example.com", ["cy@other.example"], mail("bob@example.com", "cy", "hi")) == {}
    assert Queue(root).all() == [] and subjects(root, "INBOX") == []     # no DSN to bob
    assert "mirror" in caplog.text and "gone@example.com" in caplog.text
