"""Imports from Dovecot: over IMAP from a live Dovecot, and from the Maildir it wrote."""
from __future__ import annotations

import imaplib
from collections import Counter

import pytest

from dovecot import dovecot_server
from conftest import run_cli
from helpers_import import folder_messages, message_ids, target_root

USER, PASSWORD = "olduser@old.example", "old-password-1"
FOLDERS = {"INBOX": 4, "Sent": 2, "Projects/2024": 3, "Ünïcode": 1}
BASE_DATE = 1_700_000_000


def _msg(folder: str, i: int) -> bytes:
    return (f"From: a@old.example\r\nTo: {USER}\r\nMessage-ID: <{i}.{abs(hash(folder))}@old>\r\n"
            f"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nSubject: {folder} {i}\r\n\r\nBody {i}\r\n").encode()


def _expected():
    """(folder, subject) -> (flags, internaldate)."""
    out = {}
    for folder, n in FOLDERS.items():
        for i in range(n):
            flags = {"\\Seen"} if i % 2 == 0 else {"\\Flagged", "work"}
            out[(folder, f"{folder} {i}")] = (flags, BASE_DATE + 3600 * i + 60 * len(folder))
    return out


@pytest.fixture(scope="module")
def dovecot_account(tmp_path_factory):
    src = tmp_path_factory.mktemp("old") / "oldroot"
    with dovecot_server(src, {USER: PASSWORD}) as dc:
        c = imaplib.IMAP4(dc.host, dc.imap_port)
        c.login(USER, PASSWORD)
        from engine import mutf7
        for folder in FOLDERS:
            if folder != "INBOX":
                c.create('"' + mutf7.encode(folder) + '"')
        for (folder, subject), (flags, date) in _expected().items():
            i = int(subject.rsplit(" ", 1)[1])
            typ, _ = c.append('"' + mutf7.encode(folder) + '"', "(" + " ".join(sorted(flags)) + ")",
                              imaplib.Time2Internaldate(date), _msg(folder, i))
            assert typ == "OK"
        c.logout()
        yield dc, src / "mail" / "old.example" / "olduser"


def _check(root, address):
    expected = _expected()
    got = {}
    for folder in FOLDERS:
        f, msgs = folder_messages(root, address, folder)
        for m in msgs:
            subject = f.read(m).split(b"Subject: ")[1].split(b"\n")[0].decode()
            got[(folder, subject)] = (set(m.flags), m.mtime)
    assert set(got) == set(expected)
    for key, (flags, date) in expected.items():
        assert got[key][0] == flags, key
        assert abs(got[key][1] - date) < 1, key
    ids = Counter(message_ids(root, address))
    assert max(ids.values()) == 1


def test_import_over_imap_from_dovecot(dovecot_account, tmp_path):
    dc, _ = dovecot_account
    root = target_root(tmp_path / "root", "fresh@new.example")
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    args = ["import", "imap", "--host", dc.host, "--port", str(dc.imap_port), "--user", USER,
            "--password-file", str(pw), "--account", "fresh@new.example"]
    r = run_cli(root, *args)
    assert r.code == 0, r.err
    assert f"{sum(FOLDERS.values())} imported, 0 skipped" in r.out and "0 failed" in r.out
    _check(root, "fresh@new.example")
    r = run_cli(root, *args)
    assert r.code == 0 and f"0 imported, {sum(FOLDERS.values())} skipped" in r.out
    # a folder map and a wrong password
    root2 = target_root(tmp_path / "root2", "fresh@new.example")
    r = run_cli(root2, *args, "--folder-map", "Sent=Sent Items")
    assert r.code == 0
    assert len(folder_messages(root2, "fresh@new.example", "Sent Items")[1]) == FOLDERS["Sent"]
    pw.write_text("wrong\n")
    r = run_cli(root2, *args)
    assert r.code == 1 and "cannot log in" in r.err


def test_import_maildir_written_by_dovecot(dovecot_account, tmp_path):
    _, maildir = dovecot_account
    root = target_root(tmp_path / "root", "fresh@new.example")
    assert (maildir / "dovecot-uidlist").exists()          # really Dovecot's tree
    r = run_cli(root, "import", "maildir", str(maildir), "--account", "fresh@new.example")
    assert r.code == 0, r.err
    assert f"{sum(FOLDERS.values())} imported" in r.out
    _check(root, "fresh@new.example")
    r = run_cli(root, "import", "maildir", str(maildir), "--account", "fresh@new.example")
    assert r.code == 0 and "0 imported" in r.out
    r = run_cli(root, "import", "maildir", str(tmp_path), "--account", "fresh@new.example")
    assert r.code == 1 and "not a Maildir" in r.err


def test_import_fs_layout_maildir(tmp_path):
    src = tmp_path / "fs"
    for folder in ("", "Archive", "Archive/2019"):
        for sub in ("cur", "new", "tmp"):
            (src / folder / sub).mkdir(parents=True, exist_ok=True)
    (src / "Archive" / "2019" / "cur" / "1500000000.M1P1Q1.h:2,RS").write_bytes(
        b"Message-ID: <fs1@x>\nSubject: deep\n\nbody\n")
    (src / "new" / "1500000001.M1P1Q2.h").write_bytes(b"Message-ID: <fs2@x>\nSubject: top\n\nbody\n")
    root = target_root(tmp_path / "root", "fresh@new.example")
    r = run_cli(root, "import", "maildir", str(src), "--account", "fresh@new.example")
    assert r.code == 0, r.err
    f, msgs = folder_messages(root, "fresh@new.example", "Archive/2019")
    assert len(msgs) == 1 and msgs[0].flags == {"\\Seen", "\\Answered"}
    assert len(folder_messages(root, "fresh@new.example")[1]) == 1
