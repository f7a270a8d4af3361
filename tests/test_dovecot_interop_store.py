"""Our Maildir++ store and Dovecot read and write the same tree."""
import imaplib
import re

import pytest

from engine.maildir import uidlist as md_uidlist
from engine.maildir import Maildir
from engine.root import Root
from tests.dovecot import dovecot_server


USER, PASSWORD = "alice@example.test", "wonderland"


def message(n: int) -> bytes:
    return f"From: bob@example.test\r\nTo: {USER}\r\nSubject: message {n}\r\n\r\nbody {n}\r\n".encode()


def fetch_flags(imap: imaplib.IMAP4) -> dict[int, set[str]]:
    typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS)")
    assert typ == "OK", data
    out = {}
    for line in data:
        m = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)
        out[int(m[1])] = set(m[2].decode().split()) - {"\\Recent"}
    return out


@pytest.fixture
def store(tmp_path):
    md = Maildir.for_account(Root(tmp_path), "example.test", "alice")
    md.create()
    for n in range(5):
        md.deliver(message(n))
    md.deliver(message(10), folder="Sent", flags=["\\Seen"])
    md.deliver(message(11), folder="Sent", flags=["\\Seen", "\\Answered", "Project"])
    inbox = md.folder("INBOX")
    msgs = inbox.sync()
    inbox.set_flags(msgs[0], ["\\Seen"])
    inbox.set_flags(msgs[2], ["\\Flagged", "\\Seen", "$Junk"])
    inbox.set_flags(msgs[3], ["\\Deleted", "\\Draft"])
    inbox.set_flags(msgs[4], ["$Forwarded"])
    return md


def test_dovecot_reads_and_writes_our_store(tmp_path, store):
    inbox = store.folder("INBOX")
    ours = {m.uid: set(m.flags) for m in inbox.sync()}
    sent = {m.uid: set(m.flags) for m in store.folder("Sent").sync()}
    uidvalidity = inbox.uidvalidity()

    with dovecot_server(tmp_path, {USER: PASSWORD}) as dc:
        imap = imaplib.IMAP4(dc.host, dc.imap_port)
        try:
            imap.login(USER, PASSWORD)
            typ, listing = imap.list('""', "*")
            assert typ == "OK", dc.log_text()
            attrs = {}
            for line in listing:
                m = re.match(rb'\(([^)]*)\) "/" "?([^"]*)"?', line)
                attrs[m[2].decode()] = set(m[1].decode().split())
            assert set(attrs) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
            for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
                assert "\\" + name in attrs[name], listing
            typ, data = imap.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)")
            status = data[0].decode()
            assert "MESSAGES 5" in status and "UNSEEN 3" in status, status
            assert "UIDNEXT 6" in status and f"UIDVALIDITY {uidvalidity}" in status, status
            typ, data = imap.select("INBOX")
            assert typ == "OK" and data == [b"5"]
            assert fetch_flags(imap) == ours
            typ, data = imap.select("Sent")
            assert data == [b"2"]
            assert fetch_flags(imap) == sent
            typ, data = imap.append("INBOX", "(\\Flagged)", None, message(99))
            assert typ == "OK", dc.log_text()
            appended_uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0])[1])
            imap.select("INBOX")
            typ, _ = imap.uid("STORE", "1", "+FLAGS", "(\\Answered Later)")
            assert typ == "OK"
            imap.logout()
        finally:
            log = dc.log_text()
        assert "Error" not in log and "Warning" not in log, log

    md_uidlist._UIDLIST_CACHE.clear()  # read what Dovecot wrote as a fresh process would
    inbox = Maildir(store.path).folder("INBOX")
    msgs = {m.uid: m for m in inbox.sync()}
    assert appended_uid == 6 and set(msgs) == {1, 2, 3, 4, 5, 6}
    assert msgs[6].flags == {"\\Flagged"}
    # Dovecot stores LF line ends (mail_save_crlf = no); W= keeps the CRLF size
    assert inbox.read(msgs[6]) == message(99).replace(b"\r\n", b"\n")
    assert msgs[6].vsize == len(message(99))
    assert msgs[1].flags == {"\\Seen", "\\Answered", "Later"}
    assert inbox.uidvalidity() == uidvalidity
    assert inbox.uidnext() == 7
    assert store.deliver(message(100)).uid == 7
