"""A backup taken by the CLI while the real server takes mail over SMTP."""
from __future__ import annotations

import smtplib
import subprocess
import sys
import threading

from engine.backup import restore_backup
from engine.queue import Queue
from engine.root import Root
from helpers_backup import mail_state
from helpers_server import make_root, running_server


def test_backup_during_smtp_delivery_keeps_everything_accepted_before_it(tmp_path):
    root = make_root(tmp_path, domains=("example.com",),
                     accounts={"alice@example.com": "alice-pass-1", "bob@example.com": "bob-pass-12"})
    q = Queue(root)
    qid = q.enqueue("alice@example.com", ["someone@far.example"], b"Subject: queued\n\nx\n")
    q.move(q.find(qid), "hold")           # stays in the queue while the server runs
    with running_server(root) as srv:
        def send(n: int, start: int = 0) -> None:
            with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
                for i in range(start, start + n):
                    s.sendmail("x@sender.example", ["alice@example.com", "bob@example.com"],
                               f"Subject: {i}\r\nMessage-ID: <{i}@t>\r\n\r\nbody {i}\r\n")
        send(60)
        before = mail_state(root)
        stop = threading.Event()
        sent_during = []

        def keep_sending():
            i = 1000
            while not stop.is_set() and i < 1400:
                send(5, i)
                sent_during.append(i)
                i += 5
        t = threading.Thread(target=keep_sending)
        t.start()
        try:
            p = subprocess.run([sys.executable, "-m", "mailctl", "--root", str(root.path), "backup", "create",
                                "--to", str(tmp_path / "b"), "--archive"], capture_output=True, timeout=120)
        finally:
            stop.set()
            t.join(60)
        assert p.returncode == 0, p.stderr
        assert sent_during
    archive = next((tmp_path / "b").glob("*.tar.gz"))
    new = Root(tmp_path / "restored")
    restore_backup(archive, new)
    after = mail_state(new)
    assert len(before) >= 120          # (plus perhaps a bounce for the queued item)
    for key, (digest, _flags, _mtime) in before.items():
        assert after.get(key, (None,))[0] == digest, key
    assert set(after) <= set(mail_state(root))
    restored = Queue(new).find(qid)       # the queue came along, body and envelope
    assert restored.state == "hold" and Queue(new).body_path(qid).read_bytes() == q.body_path(qid).read_bytes()
