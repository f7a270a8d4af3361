"""No reply of any protocol shows a path of the server's file system (issue 13, defect 3).

A real server over a temporary root; imaplib, poplib and smtplib sessions whose every
reply line is recorded and scanned for the root's path and the temp directory's name.
Races with another session are forced deterministically: session B expunges (or the
file is removed from disk) between A's SELECT and A's command, and A asks nothing in
between, so its view still holds the message whose file is gone.
"""
from __future__ import annotations

import imaplib
import os
import poplib
import shutil
import smtplib
import threading
import time
from pathlib import Path

import pytest

from engine.locks import DotLock
from engine.maildir import Maildir
from helpers_mail import PASSWORD, add_users
from helpers_server import make_root, running_server

DOMAIN = "example.com"
SETTINGS = {"auth.allow_plaintext": True, "auth.failure_delay_s": 0, "auth.ban_after_failures": 0}
QUOTA_TEXT = b"[OVERQUOTA] Quota exceeded (mailbox for user is full)"   # Dovecot's
LOCK_TEXT = b"Timeout while waiting for lock"                            # Dovecot's

# (criteria, whether the message whose file is gone must be left out: keys that need
# the file; sizes and indexed headers may still be answered from what is known of it)
CRITERIA = [
    ("SINCE 1-Jan-2000", True), ("BEFORE 1-Jan-2100", True), ("NOT ON 1-Jan-2000", True),
    ("SENTBEFORE 1-Jan-2100", True), ("BODY body", True), ("TEXT body", True),
    ("HEADER X-Tag yes", True), ("OR SINCE 1-Jan-2000 BODY nowhere", True),
    ("LARGER 1", False), ("FROM carol", False), ("UID 1:*", False),
]
ACCOUNTS = [f"search{i}" for i in range(len(CRITERIA) + 2)] + ["fetcher", "popper", "locked"]


class RecordingIMAP(imaplib.IMAP4):
    """imaplib, keeping every line and literal the server sent."""

    def __init__(self, port: int, transcript: list[bytes]):
        self.transcript = transcript
        super().__init__("127.0.0.1", port, timeout=60)

    def readline(self):
        line = super().readline()
        self.transcript.append(line)
        return line

    def read(self, size):
        data = super().read(size)
        self.transcript.append(data)
        return data


class RecordingPOP3(poplib.POP3):
    def __init__(self, port: int, transcript: list[bytes]):
        self.transcript = transcript
        super().__init__("127.0.0.1", port, timeout=60)

    def _getline(self):
        line, octets = super()._getline()
        self.transcript.append(line)
        return line, octets


class RecordingSMTP(smtplib.SMTP):
    def __init__(self, port: int, transcript: list[bytes]):
        self.transcript = transcript
        super().__init__("127.0.0.1", port, timeout=60)

    def getreply(self):
        code, text = super().getreply()
        self.transcript.append(b"%d %s" % (code, text))
        return code, text


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nopaths")
    root = make_root(tmp, accounts={f"{a}@{DOMAIN}": PASSWORD for a in ACCOUNTS}, settings=SETTINGS)
    add_users(root, ["dave", "erin"], quota_mb=1)
    with running_server(root) as srv:
        srv.tmp = tmp
        yield srv


def assert_no_path(server, transcript: list[bytes]) -> None:
    """Every reply of the session: neither the root's path nor any path in the temp
    directory, nor a place inside the root."""
    replies = b"".join(transcript)
    assert transcript
    for needle in (str(server.root.path).encode(), b"/" + server.tmp.name.encode(),
                   b"mail/" + DOMAIN.encode(), os.fsencode(Path(server.tmp).parent)):
        assert needle not in replies, (needle, [t for t in transcript if needle in t])


def box(server, name: str) -> Maildir:
    return Maildir.for_account(server.root, DOMAIN, name)


def fill(server, name: str, count: int = 3) -> Maildir:
    md = box(server, name)
    for i in range(1, count + 1):
        md.deliver(f"From: Carol <carol@example.org>\nTo: {name}@{DOMAIN}\nSubject: m{i}\n"
                   f"Date: Mon, 02 Jan 2023 10:00:00 +0000\nX-Tag: yes\n\nbody {i}\n".encode())
    return md


def login(server, name: str, transcript: list[bytes]) -> RecordingIMAP:
    c = RecordingIMAP(server.ports["imap"], transcript)
    c.login(f"{name}@{DOMAIN}", PASSWORD)
    return c


def expunge_second(server, name: str, transcript: list[bytes]) -> None:
    """Session B removes message 2, as any client would."""
    b = login(server, name, transcript)
    b.select("INBOX")
    assert b.store("2", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert b.expunge()[0] == "OK"
    b.logout()


@pytest.mark.parametrize("criteria,left_out", CRITERIA, ids=[c for c, _ in CRITERIA])
def test_search_meets_a_message_another_session_expunged(server, criteria, left_out):
    name = f"search{[c for c, _ in CRITERIA].index(criteria)}"
    fill(server, name)
    transcript: list[bytes] = []
    a = login(server, name, transcript)
    assert a.select("INBOX") == ("OK", [b"3"])
    expunge_second(server, name, transcript)
    typ, data = a.search(None, criteria)
    assert typ == "OK", data
    found = data[0].split()
    assert b"1" in found and b"3" in found
    if left_out:
        assert b"2" not in found
    assert a.noop()[0] == "OK"           # now the expunge is announced
    assert any(b"* 2 EXPUNGE" in line for line in transcript)
    a.logout()
    assert_no_path(server, transcript)


def test_search_meets_files_removed_from_disk(server):
    """Another program (or a Dovecot sharing the tree) removes the files themselves:
    every kind of key still completes OK and only the messages still there match."""
    name = f"search{len(CRITERIA)}"
    md = fill(server, name, 4)
    transcript: list[bytes] = []
    a = login(server, name, transcript)
    a.select("INBOX")
    gone = [f for sub in ("new", "cur") for f in (md.path / sub).iterdir()
            if b"Subject: m2\n" in f.read_bytes() or b"Subject: m4\n" in f.read_bytes()]
    assert len(gone) == 2
    for f in gone:
        f.unlink()
    for criteria in ("SINCE 1-Jan-2000", "BODY body", "SENTSINCE 1-Jan-2000", "SMALLER 1000 HEADER X-Tag yes"):
        assert a.search(None, criteria) == ("OK", [b"1 3"]), criteria
    typ, data = a.uid("SEARCH", "BEFORE 1-Jan-2100")      # UID SEARCH may announce first
    assert typ == "OK" and data[0].split() == [b"1", b"3"]
    a.logout()
    assert_no_path(server, transcript)


def test_fetch_of_a_message_another_session_expunged_shows_no_path(server):
    """Whatever FETCH answers for it (its own issue), never the file's path."""
    name = "fetcher"
    fill(server, name)
    transcript: list[bytes] = []
    a = login(server, name, transcript)
    a.select("INBOX")
    expunge_second(server, name, transcript)
    a.fetch("1:3", "(UID INTERNALDATE RFC822.SIZE)")
    assert a.noop()[0] == "OK"
    a.logout()
    assert_no_path(server, transcript)


def test_a_name_the_client_gave_is_echoed_even_when_it_looks_like_a_path(server):
    """Only the server's own paths are kept back: a refused folder name is the client's."""
    transcript: list[bytes] = []
    a = login(server, "fetcher", transcript)
    for name in ('"/etc/passwd"', '"mailctl.toml"', '"a/./b"'):
        typ, data = a.create(name)
        assert typ == "NO" and name.strip('"').encode() in data[0] and b"SERVERBUG" not in data[0]
    a.logout()
    assert_no_path(server, transcript)


def test_append_over_quota_answers_dovecots_text(server):
    transcript: list[bytes] = []
    a = login(server, "dave", transcript)
    big = b"Subject: big\r\n\r\n" + b"x" * 1_100_000          # arrives through the spool
    assert a.append("INBOX", None, None, big) == ("NO", [QUOTA_TEXT])
    part = b"Subject: part\r\n\r\n" + b"y" * 300_000
    answers = [a.append("INBOX", None, None, part)[0] for _ in range(4)]
    assert answers == ["OK", "OK", "OK", "NO"]
    assert a.append("INBOX", None, None, part) == ("NO", [QUOTA_TEXT])
    a.select("INBOX")
    assert a.copy("1:*", "INBOX") == ("NO", [QUOTA_TEXT])
    a.logout()
    assert_no_path(server, transcript)


def test_smtp_to_a_full_mailbox_shows_no_path(server):
    transcript: list[bytes] = []
    s = RecordingSMTP(server.ports["smtp"], transcript)
    s.ehlo("client.example.org")
    s.mail("carol@example.org")
    assert s.rcpt(f"erin@{DOMAIN}")[0] == 250          # not full yet: refused at DATA
    code, _ = s.data(b"Subject: too big for the quota\r\n\r\n" + b"x" * 1_200_000 + b"\r\n")
    assert code // 100 in (4, 5)
    s.quit()
    assert_no_path(server, transcript)


def test_pop3_retr_of_a_message_removed_under_it(server):
    md = fill(server, "popper")
    big = md.deliver(b"Subject: large\n\n" + b"z" * 1_200_000)     # RETR streams it from the file
    transcript: list[bytes] = []
    p = RecordingPOP3(server.ports["pop3"], transcript)
    p.user(f"popper@{DOMAIN}")
    p.pass_(PASSWORD)
    # another program (an IMAP session's EXPUNGE) removes them under the POP3 session
    for sub in ("new", "cur"):
        for f in (md.path / sub).iterdir():
            f.unlink()
    for retr in (lambda: p.retr(1), lambda: p.retr(4), lambda: p.top(2, 1)):
        with pytest.raises(poplib.error_proto) as err:
            retr()
        assert err.value.args[0].startswith(b"-ERR [SYS/TEMP] ")
    assert p.list()[0] == b"+OK"
    p.quit()
    assert big.uid and transcript
    assert_no_path(server, transcript)


def test_a_lock_held_too_long_answers_inuse_without_its_path(server, caplog):
    """dovecot-uidlist.lock held by a live process (this one) past the lock timeout:
    IMAP APPEND and a POP3 login (which must give new mail its UIDs) both wait for it,
    then answer Dovecot's text, not the lock file's path. About 30 s: the real timeout."""
    md = box(server, "locked")
    (md.path / "new" / "1700000000.M1P1.elsewhere,S=20").write_bytes(b"Subject: new\n\nfresh\n")
    imap_transcript: list[bytes] = []
    pop_transcript: list[bytes] = []
    a = login(server, "locked", imap_transcript)
    answers = {}

    def append():
        answers["imap"] = a.append("INBOX", None, None, b"Subject: x\r\n\r\nhello\r\n")

    def pop_login():
        p = RecordingPOP3(server.ports["pop3"], pop_transcript)
        p.user(f"locked@{DOMAIN}")
        try:
            answers["pop3"] = p.pass_(PASSWORD)
        except poplib.error_proto as e:
            answers["pop3"] = e.args[0]
        p.quit()

    with DotLock(md.path / "dovecot-uidlist.lock"):
        started = time.monotonic()
        threads = [threading.Thread(target=append), threading.Thread(target=pop_login)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        waited = time.monotonic() - started
    assert answers["imap"] == ("NO", [b"[INUSE] " + LOCK_TEXT]), answers
    assert answers["pop3"] == b"-ERR [IN-USE] " + LOCK_TEXT, answers
    assert waited >= 20
    assert a.append("INBOX", None, None, b"Subject: x\r\n\r\nhello\r\n")[0] == "OK"   # lock gone: works
    a.logout()
    assert_no_path(server, imap_transcript)
    assert_no_path(server, pop_transcript)
    lock = str(md.path / "dovecot-uidlist.lock")
    assert sum(lock in r.getMessage() for r in caplog.records) >= 2    # the detail: in the log


def test_what_a_client_is_told_of_the_stores_own_errors(tmp_path):
    """The errors the store really raises name their files for the administrator (the
    CLI prints str(e)); a client gets Dovecot's text or the internal-error text."""
    import errno

    from engine.errors import LockTimeout, NotFound, QuotaExceeded, client_text
    from engine.imap.errors import SERVER_BUG, mail_error_text
    from engine.storage_errors import StorageError
    root = make_root(tmp_path, accounts={f"gone@{DOMAIN}": PASSWORD, f"full@{DOMAIN}": PASSWORD})
    gone = Maildir.for_account(root, DOMAIN, "gone")
    shutil.rmtree(gone.path)
    with pytest.raises(NotFound) as missing:
        gone.folder("INBOX")
    full = Maildir.for_account(root, DOMAIN, "full")
    full.quota.set(10)
    with pytest.raises(QuotaExceeded) as over:
        full.check_quota(100)
    with pytest.raises(LockTimeout) as timeout, DotLock(full.path / "x.lock"):
        with DotLock(full.path / "x.lock", timeout=0.1):
            pass
    disk = StorageError(errno.ENOSPC, full.path / "tmp" / "x")
    for e in (missing.value, over.value, timeout.value, disk):
        assert str(root.path) in str(e)                 # the administrator's line names it
        told = client_text(e, "fallback")
        assert str(root.path) not in told and str(tmp_path) not in told
    assert mail_error_text(missing.value) == SERVER_BUG
    assert mail_error_text(over.value) == QUOTA_TEXT.decode()
    assert mail_error_text(timeout.value) == "[INUSE] " + LOCK_TEXT.decode()
    assert client_text(disk, "fallback") == "Not enough disk space"
    for text in ("folder 'a/b' does not exist", "folder name '/etc/x': empty component"):
        assert client_text(NotFound(text), "fallback") == text
    for text in ("/srv/mail: no such mailbox", "mail/example.com/x: gone", "mailctl.toml:3: bad key"):
        assert client_text(NotFound(text), "fallback") == "fallback"
