"""mailctl export to Maildir and mbox, read back by our importers with flags and dates."""
from __future__ import annotations

import mailbox

from conftest import run_cli
from helpers_backup import make_root
from helpers_import import folder_messages, target_root


def _view(root, address, folder):
    f, msgs = folder_messages(root, address, folder)
    return sorted((f.read(m), frozenset(m.flags), int(m.mtime)) for m in msgs)


def test_export_maildir_and_mbox_round_trip(tmp_path):
    src = make_root(tmp_path / "src", domains=1, accounts=2, messages=120)
    addr = "user0@d0.example"
    r = run_cli(src, "export", addr, str(tmp_path / "md"), "--format", "maildir")
    assert r.code == 0, r.err
    r = run_cli(src, "export", addr, str(tmp_path / "mb"), "--format", "mbox")
    assert r.code == 0, r.err
    assert (tmp_path / "mb" / "Projects" / "2024" / "Q1.mbox").is_file()
    # Python's mailbox module reads what we wrote
    assert len(mailbox.mbox(str(tmp_path / "mb" / "INBOX.mbox"))) == len(folder_messages(src, addr)[1])
    dst = target_root(tmp_path / "dst", "a@new.example", "b@new.example")
    assert run_cli(dst, "import", "maildir", str(tmp_path / "md"), "--account", "a@new.example").code == 0
    for folder in ("INBOX", "Projects/2024/Q1", "Sent"):
        assert _view(dst, "a@new.example", folder) == _view(src, addr, folder)
    r = run_cli(dst, "import", "mbox", str(tmp_path / "mb" / "Projects" / "2024" / "Q1.mbox"),
                "--account", "b@new.example", "--folder", "Q1")
    assert r.code == 0, r.err
    got = _view(dst, "b@new.example", "Q1")
    want = _view(src, addr, "Projects/2024/Q1")
    assert len(got) == len(want)
    # bodies and dates survive; flags \Seen \Answered \Flagged come back through Status/X-Status
    assert sorted(m[2] for m in got) == sorted(m[2] for m in want)
    assert sorted(m[1] - {"$Junk", "work"} for m in want) == sorted(m[1] for m in got)
    # single folder into one file; refusing to overwrite; unknown folder and account
    r = run_cli(src, "export", addr, str(tmp_path / "one.mbox"), "--format", "mbox", "--folder", "Sent")
    assert r.code == 0 and (tmp_path / "one.mbox").is_file()
    r = run_cli(src, "export", addr, str(tmp_path / "md"), "--format", "maildir")
    assert r.code == 1 and "not empty" in r.err
    r = run_cli(src, "export", addr, str(tmp_path / "x"), "--format", "mbox", "--folder", "Nope")
    assert r.code == 1
    r = run_cli(src, "export", "ghost@d0.example", str(tmp_path / "y"), "--format", "mbox")
    assert r.code == 1 and "no mailbox" in r.err
