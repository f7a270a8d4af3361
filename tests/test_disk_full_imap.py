"""IMAP on a full disk (ENOSPC) and a read-only file system (EROFS), on a real small file
system: every write answers a clear NO (Dovecot's `[OVERQUOTA] Not enough disk space` for
space), never a path, a dropped connection or a traceback; nothing half-done is visible to
another session; reads go on; and once there is room again the same server writes again."""
from __future__ import annotations

import errno
import imaplib
import os
import re
from pathlib import Path

import pytest

from engine.maildir import Maildir

from helpers_server import make_root, running_server
from helpers_smallfs import moved_onto, small_fs

USER, PASSWORD = "alice@example.com", "secret-pass"
MSG = b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: hello\r\n\r\nbody line\r\n"
FULL = b"[OVERQUOTA] Not enough disk space"
READ_ONLY = b"[UNAVAILABLE]"
SETTINGS = {"auth.allow_plaintext": True, "auth.ban_after_failures": 0}


def login(port: int) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(USER, PASSWORD)
    return imap


def inbox_path(root) -> Path:
    return root.mail_dir / "example.com" / "alice"


def snapshot(folder: Path) -> dict[str, bytes]:
    """What a reader sees of a folder: message names, uidlist and keyword file bytes."""
    out = {f"{sub}/{p.name}": b"" for sub in ("new", "cur") for p in (folder / sub).iterdir()}
    for name in ("dovecot-uidlist", "dovecot-keywords", "subscriptions"):
        if (folder / name).exists():
            out[name] = (folder / name).read_bytes()
    return out


def tmp_files(folder: Path) -> list[str]:
    return [p.name for p in (folder / "tmp").iterdir()]


def assert_no(reply, code: bytes) -> None:
    typ, data = reply
    text = b" ".join(d if isinstance(d, bytes) else b"" for d in data)
    assert typ == "NO", reply
    assert text.startswith(code), reply
    assert b"/" not in text, reply               # no server path


def uids_and_subjects(imap: imaplib.IMAP4) -> list[tuple[int, bytes]]:
    typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    out = []
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            out.append((uid, item[1].strip()))
    return out


@pytest.fixture
def full_fs(tmp_path):
    """A root whose mail/ is on a 16 MB tmpfs, three messages in INBOX, one in Projects."""
    root = make_root(tmp_path, accounts={USER: PASSWORD}, settings=SETTINGS)
    md = Maildir(inbox_path(root))
    for i in range(3):
        md.deliver(MSG.replace(b"hello", b"hello %d" % i).replace(b"\r\n", b"\n"))
    md.create_folder("Projects")
    md.deliver(MSG.replace(b"hello", b"archived").replace(b"\r\n", b"\n"), folder="Projects")
    with small_fs(tmp_path, "tmpfs", size_mb=16) as fs, moved_onto(fs, root.mail_dir):
        with running_server(root) as srv:
            yield fs, root, srv


def test_writes_on_a_full_disk_answer_overquota_and_leave_nothing_half_done(full_fs):
    fs, root, srv = full_fs
    port = srv.ports["imap"]
    inbox = inbox_path(root)
    imap, other = login(port), login(port)
    assert imap.select("INBOX")[0] == "OK"
    before = uids_and_subjects(imap)
    assert len(before) == 3
    seen_before = snapshot(inbox)
    fs.fill()

    assert_no(imap.append("INBOX", None, None, MSG), FULL)
    assert_no(imap.append("Projects", "(\\Seen)", None, MSG * 50), FULL)
    assert_no(imap.create("NewFolder"), FULL)
    assert_no(imap.store("1", "+FLAGS", "(NewKeyword)"), FULL)     # dovecot-keywords needs room
    assert_no(imap.subscribe("Projects"), FULL)

    # nothing half-done: the same files, uidlist and keyword file; tmp/ cleaned
    assert snapshot(inbox) == seen_before
    assert tmp_files(inbox) == [] and tmp_files(inbox / ".Projects") == []
    assert not [p for p in inbox.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".NewFolder")]

    # the session and a second one go on reading; other folders still open
    assert uids_and_subjects(imap) == before
    assert imap.uid("SEARCH", None, "SUBJECT", "hello")[1] == [b"1 2 3"]
    assert other.select("Projects")[0] == "OK"
    assert [s for _, s in uids_and_subjects(other)] == [b"Subject: archived"]
    assert other.select("INBOX")[0] == "OK"
    assert uids_and_subjects(other) == before
    # system flags need no room (one rename), so that write still works
    assert imap.store("2", "+FLAGS", "(\\Seen)")[0] == "OK"
    assert other.noop()[0] == "OK"

    # space back: the same running server writes again, with the next UIDs
    fs.unfill()
    typ, data = imap.append("INBOX", None, None, MSG)
    assert typ == "OK", data
    assert re.search(rb"APPENDUID \d+ 4\]", data[0]), data
    assert imap.create("NewFolder")[0] == "OK"
    assert imap.store("1", "+FLAGS", "(NewKeyword)")[0] == "OK"
    assert other.noop()[0] == "OK"
    assert len(uids_and_subjects(other)) == 4
    for session in (imap, other):
        session.logout()


def test_writes_on_a_read_only_disk_answer_unavailable_and_reads_go_on(full_fs):
    fs, root, srv = full_fs
    port = srv.ports["imap"]
    inbox = inbox_path(root)
    imap = login(port)
    assert imap.select("INBOX")[0] == "OK"
    assert imap.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    before = uids_and_subjects(imap)
    seen_before, archive_before = snapshot(inbox), snapshot(inbox / ".Projects")
    fs.read_only()
    try:
        assert_no(imap.append("INBOX", None, None, MSG), READ_ONLY)
        assert_no(imap.copy("1:3", "Projects"), READ_ONLY)
        assert_no(imap.uid("MOVE", "1:3", "Projects"), READ_ONLY)
        assert_no(imap.store("2", "+FLAGS", "(\\Flagged)"), READ_ONLY)
        assert_no(imap.expunge(), READ_ONLY)
        assert_no(imap.create("Other"), READ_ONLY)
        assert_no(imap.rename("Projects", "Old"), READ_ONLY)
        assert_no(imap.subscribe("Projects"), READ_ONLY)

        assert snapshot(inbox) == seen_before
        assert snapshot(inbox / ".Projects") == archive_before
        assert uids_and_subjects(imap) == before          # still three, the \Deleted one too
        other = login(port)
        assert other.select("Projects")[0] == "OK"
        assert len(uids_and_subjects(other)) == 1
        other.logout()
    finally:
        fs.read_write()
    assert imap.expunge()[0] == "OK"
    assert imap.copy("1", "Projects")[0] == "OK"
    typ, data = imap.append("INBOX", None, None, MSG)
    assert typ == "OK", data
    imap.logout()


def test_a_failed_copy_leaves_the_destination_as_it_was(full_fs, monkeypatch):
    """The disk fills in the middle of a COPY of several messages (copies made by
    copying, not linking, since the source message is bigger than what is left)."""
    fs, root, srv = full_fs
    inbox = inbox_path(root)
    md = Maildir(inbox)
    big = MSG + b"x" * 400_000 + b"\r\n"
    for _ in range(3):
        md.deliver(big.replace(b"\r\n", b"\n"))
    imap = login(srv.ports["imap"])
    assert imap.select("INBOX")[0] == "OK"
    archive_before = snapshot(inbox / ".Projects")
    # room for one copy: the second fails (a link would not fail, so other file systems
    # that refuse links are what this mimics: the first copy is made and must be undone)
    fs.fill(leave=600_000)
    monkeypatch.setattr(os, "link", _no_links)
    assert_no(imap.copy("4:6", "Projects"), FULL)
    monkeypatch.undo()
    after = snapshot(inbox / ".Projects")
    # the same message files; the uidlist may keep the undone copy's record (a UID is
    # never given twice), which readers drop since its file is gone
    assert after.pop("dovecot-uidlist").startswith(archive_before.pop("dovecot-uidlist"))
    assert after == archive_before
    assert tmp_files(inbox / ".Projects") == []
    assert imap.select("Projects")[0] == "OK"
    assert [s for _, s in uids_and_subjects(imap)] == [b"Subject: archived"]
    imap.logout()


def _no_links(src, dst, *a, **kw):
    raise OSError(errno.EXDEV, "Invalid cross-device link")


def test_select_whose_new_mail_cannot_be_numbered_answers_no_and_the_uidlist_stays_whole(full_fs):
    """A message delivered without a UID (as SMTP intake does), the uidlist's last page
    full, then the disk: the record that SELECT appends would be cut at the page's end.
    The uidlist must stay as it was (no half record for Dovecot to read as a record)."""
    fs, root, srv = full_fs
    inbox = inbox_path(root)
    md = Maildir(inbox)
    uidlist = inbox / "dovecot-uidlist"
    record = len(uidlist.read_bytes().split(b"\n")[-2]) + 1
    while uidlist.stat().st_size + record <= 4096:    # fill the page to within a record
        md.deliver(MSG.replace(b"\r\n", b"\n"))
    count = len(uidlist.read_bytes().split(b"\n")) - 2
    staged = md.stage(MSG.replace(b"hello", b"unnumbered").replace(b"\r\n", b"\n"), assign_uid=False)
    staged.commit()
    md.deliver(MSG.replace(b"\r\n", b"\n"), folder="Projects")   # Projects is numbered already
    before = uidlist.read_bytes()
    fs.fill()
    imap = login(srv.ports["imap"])
    assert_no(imap.select("INBOX"), FULL)
    assert uidlist.read_bytes() == before
    assert not [p for p in inbox.iterdir() if p.name.startswith("dovecot-uidlist.")]
    assert imap.select("Projects")[0] == "OK"              # the session goes on
    assert len(uids_and_subjects(imap)) == 2
    fs.unfill()
    assert imap.select("INBOX")[0] == "OK"
    got = uids_and_subjects(imap)
    assert len(got) == count + 1 and got[-1][1] == b"Subject: unnumbered"
    imap.logout()


def test_a_serving_process_meets_a_full_then_read_only_disk_and_recovers_without_restart(tmp_path):
    """`mailctl serve` as run in production: the disk fills, then goes read-only, then
    comes back; every client gets its answer and the same process writes again."""
    import poplib
    from helpers_server import serve_process
    root = make_root(tmp_path, accounts={USER: PASSWORD}, settings=SETTINGS)
    Maildir(inbox_path(root)).deliver(MSG.replace(b"\r\n", b"\n"))
    with small_fs(tmp_path, "tmpfs", size_mb=16) as fs, moved_onto(fs, root.mail_dir):
        with serve_process(root) as proc:
            imap = login(proc.ports["imap"])
            assert imap.select("INBOX")[0] == "OK"
            fs.fill()
            assert_no(imap.append("INBOX", None, None, MSG), FULL)
            assert len(uids_and_subjects(imap)) == 1
            fs.read_only()
            try:
                assert_no(imap.append("INBOX", None, None, MSG), READ_ONLY)
                pop = poplib.POP3("127.0.0.1", proc.ports["pop3"], timeout=30)
                pop.user(USER)
                pop.pass_(PASSWORD)
                assert pop.retr(1)[1][-1] == b"body line"
                pop.dele(1)
                with pytest.raises(poplib.error_proto, match=r"SYS/TEMP] Some messages were not deleted"):
                    pop.quit()
            finally:
                fs.read_write()
            fs.unfill()
            typ, data = imap.append("INBOX", None, None, MSG)
            assert typ == "OK", data
            assert imap.noop()[0] == "OK" and len(uids_and_subjects(imap)) == 2
            imap.logout()
            pop = poplib.POP3("127.0.0.1", proc.ports["pop3"], timeout=30)
            pop.user(USER)
            pop.pass_(PASSWORD)
            assert pop.stat()[0] == 2
            pop.dele(1)
            assert pop.quit().startswith(b"+OK")
            assert proc.proc.poll() is None                    # the same process throughout
        assert len(list((inbox_path(root) / "cur").iterdir()) + list((inbox_path(root) / "new").iterdir())) == 1
