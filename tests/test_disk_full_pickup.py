"""The pickup folder on a full or read-only disk: a dropped file stays in pickup/ (not
moved to failed/, not lost, said once in the log) and is taken by the running server as
soon as there is room, without a restart."""
from __future__ import annotations

import os
import time

import pytest

from helpers_diskfull import full_disk_root, stored_files, wait_until
from helpers_server import serve_process

PW = "alice-password-1"
NOTE = b"X-Sender: ops@example.com\r\nX-Receiver: alice@example.com\r\nSubject: from pickup\r\n\r\nhello\r\n"


@pytest.mark.parametrize("fault", ["full", "one page left", "read-only"])
def test_a_file_waits_in_pickup_until_there_is_room(tmp_path, fault):
    settings = {"pickup.enabled": True, "pickup.settle_seconds": 0.1, "pickup.poll_seconds": 0.2}
    with full_disk_root(tmp_path, accounts={"alice@example.com": PW}, settings=settings) as (fs, root), \
            serve_process(root) as srv:
        (root.pickup_dir / "note.tmp").write_bytes(NOTE)
        fs.fill(leave=4096 if fault == "one page left" else 0)    # one page: a copy fits, not its marker
        os.rename(root.pickup_dir / "note.tmp", root.pickup_dir / "note.eml")   # a rename needs no room
        if fault == "read-only":
            fs.unfill()
            fs.read_only()
        try:
            time.sleep(3)                                   # many passes meanwhile
            assert sorted(os.listdir(root.pickup_dir)) == [".work", "failed", "note.eml"]
            assert os.listdir(root.pickup_dir / "failed") == [] and os.listdir(root.pickup_dir / ".work") == []
            assert stored_files(root) == []
        finally:
            fs.read_write()
        fs.unfill()
        assert wait_until(lambda: not (root.pickup_dir / "note.eml").exists())
        assert wait_until(lambda: [f.split("/")[3] for f in stored_files(root)] == ["new"])
        [stored] = stored_files(root)
        assert b"Subject: from pickup" in (root.path / stored).read_bytes()
        assert os.listdir(root.pickup_dir / "failed") == []
        assert srv.proc.poll() is None
        # the log's writer thread writes its lines a few milliseconds later
        assert wait_until(lambda: "pickup note.eml: from=" in (root.log_dir / "mailctl.log").read_text())
        log = (root.log_dir / "mailctl.log").read_text()
        assert log.count("pickup note.eml: ") == 2, log     # one warning while waiting, one when taken
        assert "stays in pickup/ until there is room" in log
