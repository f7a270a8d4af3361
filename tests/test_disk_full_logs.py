"""The log on a full disk: writing it never stops mail or raises into a session; the
lines wait in memory and reach log/mailctl.log, in order, once there is room again."""
from __future__ import annotations

import logging
import queue
import smtplib
import time

from engine import diskspace, logs
from engine.root import Root
from helpers_diskfull import full_disk_root, wait_until
from helpers_server import serve_process
from helpers_smallfs import small_fs

PW = "alice-password-1"


def test_lines_written_while_the_disk_is_full_arrive_once_it_has_room(tmp_path):
    with small_fs(tmp_path, "tmpfs", size_mb=4) as fs:
        root = Root(fs.path / "root")
        logs.setup(root, stderr=False)
        try:
            log = logging.getLogger("mailctl")
            log.info("line 0")
            assert wait_until(lambda: "line 0" in (root.log_dir / "mailctl.log").read_text())
            fs.fill()
            for i in range(1, 2001):
                log.info("line %d %s", i, "x" * 100)        # more than the file's last page
            time.sleep(0.5)
            text = (root.log_dir / "mailctl.log").read_text()
            assert "line 2000" not in text
            fs.unfill()                                      # no new line: the writer retries by itself
            assert wait_until(lambda: "line 2000 " in (root.log_dir / "mailctl.log").read_text())
            numbers = [int(line.split("line ")[1].split()[0])
                       for line in (root.log_dir / "mailctl.log").read_text().splitlines()]
            assert numbers == list(range(2001))              # every line once, in order, none torn
        finally:
            logs.stop()


def test_serve_with_its_log_on_a_full_disk_keeps_answering(tmp_path):
    with full_disk_root(tmp_path, accounts={"alice@example.com": PW}, elsewhere=("run",)) as (fs, root), \
            serve_process(root) as srv:
        fs.fill()
        for _ in range(20):                                  # every transaction logs lines: more than a page
            with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
                c.ehlo()
                assert c.mail("carol@example.org")[0] == 250
                assert c.rcpt("alice@example.com")[0] == 250
                assert c.data(b"Subject: s\r\n\r\nhi\r\n") == (452, b"4.3.1 Insufficient system storage")
        fs.unfill()
        time.sleep(diskspace.CACHE_SECONDS + 0.2)           # the server looks at free space once a second
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
            c.sendmail("carol@example.org", ["alice@example.com"], b"Subject: s\r\n\r\nhi\r\n")
        log = root.log_dir / "mailctl.log"
        assert wait_until(lambda: log.read_text().count("result='452 4.3.1 Insufficient system storage'") == 20), log.read_text()[-6000:]
        assert wait_until(lambda: "result='250 2.0.0 Ok: queued as" in log.read_text())
        assert srv.proc.poll() is None


def test_a_line_the_disk_cannot_take_whole_is_not_half_written(tmp_path):
    """The log's last page has room for part of the next line only: nothing of it is
    written (another serving process would append its lines to the half), until there
    is room for all of it."""
    with small_fs(tmp_path, "tmpfs", size_mb=4) as fs:
        path = fs.path / "mailctl.log"
        path.write_bytes(b"x" * 3995 + b"\n")              # 100 bytes left in its last page
        fs.fill()
        records = queue.SimpleQueue()
        writer = logs.LogWriter(records, path, stderr=False, rotate=False)
        writer.start()
        try:
            records.put(logging.makeLogRecord({"msg": "y" * 300, "levelname": "INFO"}))
            time.sleep(0.5)
            assert path.read_bytes().endswith(b"x\n") and path.stat().st_size == 3996
            fs.unfill()
            assert wait_until(lambda: path.read_bytes().endswith(b"y" * 300 + b"\n"))
        finally:
            records.put(None)
            writer.join(10)
