"""POP3 on a full disk and a read-only file system (a real small file system, a real
server, poplib): the mailbox can be read; deletions at QUIT either happen wholly or
answer `-ERR [SYS/TEMP] ...` with every message still there; once the disk is writable
again the same running server deletes."""
from __future__ import annotations

import poplib
import time

import pytest

from engine.maildir import Maildir

from helpers_server import make_root, running_server
from helpers_smallfs import moved_onto, small_fs

USER, PASSWORD = "alice@example.com", "secret-pass"
SETTINGS = {"auth.allow_plaintext": True, "auth.ban_after_failures": 0}
MSG = b"From: bob@example.com\nTo: alice@example.com\nSubject: hello %d\n\nbody\n"


def login(port: int) -> poplib.POP3:
    pop = poplib.POP3("127.0.0.1", port, timeout=30)
    pop.user(USER)
    pop.pass_(PASSWORD)
    return pop


def subjects(pop: poplib.POP3) -> list[bytes]:
    count = pop.stat()[0]
    return [next(line for line in pop.top(n, 0)[1] if line.startswith(b"Subject:"))
            for n in range(1, count + 1)]


def uidlist_records(root) -> list[bytes]:
    text = (root.mail_dir / "example.com" / "alice" / "dovecot-uidlist").read_bytes()
    assert text.startswith(b"3 ") and text.endswith(b"\n")
    return text.split(b"\n")[1:-1]


@pytest.fixture
def pop_fs(tmp_path):
    root = make_root(tmp_path, accounts={USER: PASSWORD}, settings=SETTINGS)
    md = Maildir(root.mail_dir / "example.com" / "alice")
    for i in range(3):
        md.deliver(MSG % i)
    with small_fs(tmp_path, "tmpfs", size_mb=8) as fs, moved_onto(fs, root.mail_dir):
        with running_server(root) as srv:
            yield fs, root, srv.ports["pop3"]


def test_dele_on_a_read_only_disk_keeps_every_message_and_works_again_later(pop_fs):
    fs, root, port = pop_fs
    fs.read_only()
    try:
        pop = login(port)                       # reading needs no writes: login works
        assert subjects(pop) == [b"Subject: hello 0", b"Subject: hello 1", b"Subject: hello 2"]
        assert pop.dele(1).startswith(b"+OK") and pop.dele(3).startswith(b"+OK")
        with pytest.raises(poplib.error_proto) as err:
            pop.quit()
        text = err.value.args[0]
        assert text.startswith(b"-ERR [SYS/TEMP] Some messages were not deleted:"), text
        assert b"read-only" in text and b"/" not in text.split(b"]", 1)[1]     # no path
        again = login(port)                     # nothing half-done: all three still there
        assert again.stat()[0] == 3
        again.quit()
    finally:
        fs.read_write()
    pop = login(port)
    pop.dele(1)
    assert pop.quit().startswith(b"+OK")
    pop = login(port)
    assert subjects(pop) == [b"Subject: hello 1", b"Subject: hello 2"]
    pop.quit()


def test_dele_on_a_full_disk_deletes_and_the_uidlist_stays_whole(pop_fs):
    """Removing files needs no room; the uidlist's cleanup that does is left for later,
    so QUIT answers +OK and the uidlist is the old one, intact."""
    fs, root, port = pop_fs
    records = uidlist_records(root)
    fs.fill()
    pop = login(port)                           # the maildrop lock needs room: login goes on
    assert pop.stat()[0] == 3
    pop.dele(2)
    assert pop.quit().startswith(b"+OK")
    pop = login(port)
    assert subjects(pop) == [b"Subject: hello 0", b"Subject: hello 2"]
    pop.quit()
    assert uidlist_records(root)[:3] == records
    inbox = root.mail_dir / "example.com" / "alice"
    deadline = time.monotonic() + 10            # the lock goes just after "+OK Bye"
    while (inbox / "pop3.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p.name for p in inbox.iterdir() if p.name.endswith((".tmp", ".lock"))]
    assert not list((inbox / "tmp").iterdir())
    fs.unfill()
    pop = login(port)
    pop.dele(1)
    assert pop.quit().startswith(b"+OK")
    pop = login(port)
    assert subjects(pop) == [b"Subject: hello 2"]
    pop.quit()
    assert len(uidlist_records(root)) == 1       # the records of removed files dropped now
