"""Files a crash left in a folder's tmp/ go at the folder's next sync once their mtime
and ctime are both older than mailbox.tmp_max_age_hours (36, as Dovecot), against a real
`mailctl serve`: a ctime cannot be set back, so the tests set the age to a few seconds
and wait. Files in use (a fresh one, one whose mtime an APPEND's INTERNALDATE or a COPY's
hard link made old) stay; a link in tmp/ is not followed; a read-only tree keeps serving."""
from __future__ import annotations

import imaplib
import os
import time
from pathlib import Path

from engine.maildir import Maildir

from helpers_server import make_root, serve_process
from helpers_smallfs import moved_onto, small_fs

USER, PASSWORD = "alice@example.com", "secret-pass"
MSG = b"From: bob@example.com\nTo: alice@example.com\nSubject: kept\n\nbody\n"
MAX_AGE_S = 3
SETTINGS = {"auth.allow_plaintext": True, "auth.ban_after_failures": 0,
            "mailbox.tmp_max_age_hours": MAX_AGE_S / 3600}
DAY = 86400


def inbox_path(root) -> Path:
    return root.mail_dir / "example.com" / "alice"


def leave_strays(tmp: Path, n: int = 3) -> list[Path]:
    """What a kill -9 in the middle of deliveries and APPENDs leaves."""
    strays = [tmp / f"{1_700_000_000 + i}.M{i}P4242.host,S=999" for i in range(n - 1)]
    strays.append(tmp / "1700000000.P4242R0123456789abcdef.spool")
    for p in strays:
        p.write_bytes(b"From: half a message\n")
    return strays


def wait_past_max_age() -> None:
    time.sleep(MAX_AGE_S + 0.5)


def login(port: int) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(USER, PASSWORD)
    return imap


def subjects(imap: imaplib.IMAP4) -> list[bytes]:
    typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    return [d[1].strip() for d in data if isinstance(d, tuple)]


def test_old_leftovers_go_at_a_sync_and_files_in_use_stay(tmp_path):
    root = make_root(tmp_path, accounts={USER: PASSWORD}, settings=SETTINGS)
    inbox = inbox_path(root)
    Maildir(inbox).deliver(MSG)
    strays = leave_strays(inbox / "tmp")
    sent_stray = leave_strays(inbox / ".Sent" / "tmp", 1)[0]
    outside = tmp_path / "outside.txt"                 # old too, and reached by a link in tmp/
    outside.write_bytes(b"not the server's")
    link = inbox / "tmp" / "1700000000.M9P4242.link"
    link.symlink_to(outside)
    wait_past_max_age()
    with serve_process(root) as proc:
        imap = login(proc.ports["imap"])
        assert all(p.exists() for p in strays)         # no sync yet: login looks at no folder
        # A file being written now, and one an APPEND with an old INTERNALDATE (or a COPY's
        # hard link) staged: its mtime is old, its ctime is now.
        fresh = inbox / "tmp" / "1800000000.M1P4242.host"
        fresh.write_bytes(b"being written")
        dated = inbox / "tmp" / "1800000000.M2P4242.host"
        dated.write_bytes(b"appended with INTERNALDATE 2001")
        old = time.time() - 3 * DAY
        os.utime(dated, (old, old))
        assert imap.select("INBOX")[0] == "OK"
        assert [p for p in strays if p.exists()] == []
        assert fresh.exists() and dated.exists()
        assert link.is_symlink() and outside.read_bytes() == b"not the server's"
        assert subjects(imap) == [b"Subject: kept"]
        assert sent_stray.exists()                      # Sent/ is cleaned at its own sync
        assert imap.select("Sent")[0] == "OK"
        assert not sent_stray.exists()

        # tmp/ is looked at once an hour per folder: a later sync (new mail) does not list it
        later = leave_strays(inbox / "tmp", 1)[0]
        wait_past_max_age()
        assert imap.append("INBOX", None, None, MSG.replace(b"\n", b"\r\n"))[0] == "OK"
        assert imap.select("INBOX")[0] == "OK"
        assert len(subjects(imap)) == 2
        assert later.exists()
        imap.logout()
    assert fresh.exists() and dated.exists()


def test_a_read_only_tree_keeps_serving_and_is_cleaned_once_writable(tmp_path):
    root = make_root(tmp_path, accounts={USER: PASSWORD}, settings=SETTINGS)
    Maildir(inbox_path(root)).deliver(MSG)
    with small_fs(tmp_path, "tmpfs", size_mb=16) as fs, moved_onto(fs, root.mail_dir):
        inbox = inbox_path(root)
        strays = leave_strays(inbox / "tmp")
        wait_past_max_age()
        fs.read_only()
        try:
            with serve_process(root) as proc:
                imap = login(proc.ports["imap"])
                assert imap.select("INBOX")[0] == "OK"
                assert subjects(imap) == [b"Subject: kept"]
                imap.logout()
        finally:
            fs.read_write()
        assert all(p.exists() for p in strays)
        logged = "".join(p.read_text(errors="replace") for p in root.log_dir.glob("*.log*"))
        assert "not cleaned" not in logged          # quiet on EROFS
        with serve_process(root) as proc:
            imap = login(proc.ports["imap"])
            assert imap.select("INBOX")[0] == "OK"
            imap.logout()
        assert [p for p in strays if p.exists()] == []


def test_a_tmp_that_is_a_link_is_not_followed(tmp_path):
    """A folder whose tmp/ is a link to a directory outside the root: nothing there goes."""
    root = make_root(tmp_path, accounts={USER: PASSWORD}, settings=SETTINGS)
    inbox = inbox_path(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victims = leave_strays(elsewhere)
    strays = leave_strays(inbox / "tmp")
    evil = inbox / ".Evil"
    for sub in ("cur", "new"):
        (evil / sub).mkdir(parents=True)
    (evil / "tmp").symlink_to(elsewhere)
    wait_past_max_age()
    with serve_process(root) as proc:
        imap = login(proc.ports["imap"])
        assert imap.select("INBOX")[0] == "OK"
        assert imap.select("Evil")[0] == "NO"           # skipped as if not there
        imap.logout()
    assert [p for p in strays if p.exists()] == []
    assert all(p.exists() for p in victims)
