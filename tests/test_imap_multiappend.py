"""MULTIAPPEND (RFC 3502): several messages in one APPEND are stored all together or not
at all: over quota on the third, a bad literal, the client gone mid-way; another session
sees them appear at once (EXISTS jumps by N); APPENDUID gives the UID set."""
from __future__ import annotations

import re
import threading
import time

from engine.maildir import UIDLIST
from helpers_mail import box, imap, mailserver, user  # noqa: F401 - pytest fixtures, used as test arguments
from helpers_raw import Raw
from helpers_server import imap_sessions_in_two_processes, make_root, serve_process, wait_for_processes

MSG = b"From: a@example.org\r\nSubject: m%d\r\n\r\nbody %d\r\n"


def raw_login(srv, address: str) -> Raw:
    r = Raw(srv.port("imap"))
    r.login(address)
    return r


def multi(n: int, start: int = 0, flags: bytes = b"") -> bytes:
    """An APPEND's message list of n LITERAL+ messages."""
    out = b""
    for i in range(start, start + n):
        m = MSG % (i, i)
        out += b" " + flags + b"{%d+}\r\n" % len(m) + m
    return out


def files(md, folder: str = "INBOX") -> list[str]:
    path = md.path if folder == "INBOX" else md.path / f".{folder}"
    return sorted(p.name for sub in ("new", "cur", "tmp") for p in (path / sub).iterdir())


def test_three_messages_in_one_append_get_consecutive_uids(mailserver, user):
    r = raw_login(mailserver, user)
    reply = r.cmd(b"APPEND INBOX" + multi(3) + b" (\\Seen) \"14-Jul-2023 02:44:25 -0700\" {5+}\r\nhello")
    m = re.match(rb"t1 OK \[APPENDUID (\d+) 1:4\] ", reply)
    assert m, reply
    c = imap(mailserver, user)
    c.select("INBOX")
    typ, data = c.fetch("1:4", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    text = b" ".join(x[1] if isinstance(x, tuple) else x for x in data)
    assert text.count(b"Subject: m") == 3 and b"hello" not in text
    typ, data = c.fetch("4", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert b"\\Seen" in data[0][0] and b"14-Jul-2023" in data[0][0] and data[0][1] == b"hello"
    c.logout()
    r.close()


def test_over_quota_on_the_third_stores_none(mailserver, user):
    md = box(mailserver, user)
    md.set_quota(2 * len(MSG % (0, 0)) + 10)      # room for two of the three
    r = raw_login(mailserver, user)
    reply = r.cmd(b"APPEND INBOX" + multi(3))
    assert reply.startswith(b"t1 NO [OVERQUOTA]"), reply
    assert files(md) == [] and md.quota.usage() == (0, 0)
    # two fit: stored, counted once
    assert r.cmd(b"APPEND INBOX" + multi(2), b"t2").startswith(b"t2 OK [APPENDUID ")
    assert len(files(md)) == 2
    r.close()


def test_a_bad_third_message_stores_none(mailserver, user):
    md = box(mailserver, user)
    r = raw_login(mailserver, user)
    # the third one's date is not a date; the fourth message is empty; the third's flag is not storable (found at staging)
    for bad_tail, status in ((b' "32-Foo-2023 99:00:00 +0000" {3+}\r\nabc', b"BAD"), (b" {0+}\r\n", b"NO"),
                             (b" (\\Bogus\\) {3+}\r\nabc", b"NO")):
        reply = r.cmd(b"APPEND INBOX" + multi(2) + bad_tail)
        assert reply.startswith(b"t1 " + status), reply
    assert files(md) == []
    assert r.cmd(b"NOOP", b"t2").startswith(b"t2 OK")
    r.close()


def test_client_gone_mid_literals_stores_none(mailserver, user):
    md = box(mailserver, user)
    r = raw_login(mailserver, user)
    big = b"x" * 400_000                          # the second one goes to a file as it arrives
    r.send(b"t1 APPEND INBOX" + multi(1) + b" {%d+}\r\n" % (len(big) + 1000) + big)
    time.sleep(0.3)
    r.close()
    deadline = time.monotonic() + 5
    while files(md) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert files(md) == []                      # nothing stored, and the spool file gone from tmp/
    c = imap(mailserver, user)
    assert c.select("INBOX")[1] == [b"0"]
    c.logout()


def test_large_messages_among_small_ones(mailserver, user):
    md = box(mailserver, user)
    r = raw_login(mailserver, user)
    big = b"Subject: big\r\n\r\n" + b"y" * 300_000 + b"\r\n"
    reply = r.cmd(b"APPEND INBOX" + multi(1) + b" {%d+}\r\n" % len(big) + big + b" {%d+}\r\n" % len(big) + big
                  + multi(1, 5))
    assert re.match(rb"t1 OK \[APPENDUID \d+ 1:4\] ", reply), reply
    assert len(files(md)) == 4
    c = imap(mailserver, user)
    c.select("INBOX")
    typ, data = c.fetch("2:3", "(RFC822.SIZE)")
    assert all(b"RFC822.SIZE %d" % len(big) in d for d in data), data
    c.logout()


def test_another_session_sees_all_at_once(mailserver, user):
    """A session polling with NOOP while others append ten at a time never sees a count
    that is not a multiple of ten."""
    watcher = raw_login(mailserver, user)
    assert watcher.cmd(b"SELECT INBOX", b"s").startswith(b"s OK")
    seen: list[int] = []
    stop = threading.Event()

    def poll():
        n = 0
        while not stop.is_set():
            for line in watcher.until_tag(b"n%d" % n) if watcher.send(b"n%d NOOP\r\n" % n) is None else []:
                m = re.match(rb"\* (\d+) EXISTS", line)
                if m:
                    seen.append(int(m.group(1)))
            n += 1

    t = threading.Thread(target=poll)
    t.start()
    writers = [raw_login(mailserver, user) for _ in range(2)]
    try:
        for round_ in range(8):
            for w in writers:
                assert w.cmd(b"APPEND INBOX" + multi(10, round_ * 10)).startswith(b"t1 OK")
    finally:
        time.sleep(0.3)
        stop.set()
        t.join()
    assert seen and seen[-1] == 160, seen
    assert all(n % 10 == 0 for n in seen), seen
    for w in writers:
        w.close()
    watcher.close()


def test_uidlist_gets_one_record_write_for_the_batch(mailserver, user):
    md = box(mailserver, user)
    r = raw_login(mailserver, user)
    assert r.cmd(b"APPEND INBOX" + multi(5)).startswith(b"t1 OK")
    lines = (md.path / UIDLIST).read_text().splitlines()
    assert [ln.split()[0] for ln in lines[1:]] == ["1", "2", "3", "4", "5"]
    r.close()


def _tagged(c, tag: bytes) -> list[bytes]:
    """Lines an imaplib session reads up to its tagged reply (sent raw through it)."""
    lines = []
    while True:
        line = c.readline()
        assert line, "connection closed"
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines


def test_a_session_in_another_serving_process_sees_all_at_once(tmp_path):
    """The appending session and the watching one in different serving processes: the
    watcher's sync lists the folder without the appender's locks, so it must list again
    when it caught the links midway (maildir/sync.py)."""
    root = make_root(tmp_path, accounts={"alice@example.com": "multiappend-pw-1"},
                     settings={"server.processes": 2, "auth.allow_plaintext": True, "queue.offline": True})
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        watcher, writer = imap_sessions_in_two_processes(root, proc.ports["imap"], "alice@example.com", "multiappend-pw-1")
        watcher.select("INBOX")
        seen: list[int] = []
        stop = threading.Event()

        def poll():
            n = 0
            while not stop.is_set():
                watcher.send(b"n%d NOOP\r\n" % n)
                for line in _tagged(watcher, b"n%d" % n):
                    m = re.match(rb"\* (\d+) EXISTS", line)
                    if m:
                        seen.append(int(m.group(1)))
                n += 1

        t = threading.Thread(target=poll)
        t.start()
        try:
            for round_ in range(25):
                writer.send(b"w%d APPEND INBOX" % round_ + multi(20, round_ * 20) + b"\r\n")
                assert _tagged(writer, b"w%d" % round_)[-1].startswith(b"w%d OK" % round_)
        finally:
            time.sleep(0.5)
            stop.set()
            t.join()
        assert seen and seen[-1] == 500, seen
        assert all(n % 20 == 0 for n in seen), seen


def test_a_full_disk_on_the_third_message_stores_none(tmp_path):
    """The first two messages fit, the third does not: nothing of the APPEND is visible,
    nothing stays in tmp/; with room again the same APPEND stores all three."""
    from helpers_smallfs import moved_onto, need_mount, small_fs
    from helpers_server import running_server
    need_mount()
    address, password = "alice@example.com", "multiappend-pw-1"
    root = make_root(tmp_path, accounts={address: password},
                     settings={"auth.allow_plaintext": True, "auth.ban_after_failures": 0})
    inbox = root.mail_dir / "example.com" / "alice"
    from engine.maildir import Maildir
    Maildir(inbox).deliver(b"Subject: old\n\nold\n")
    with small_fs(tmp_path, "tmpfs", size_mb=16) as fs, moved_onto(fs, root.mail_dir), running_server(root) as srv:
        watcher, r = Raw(srv.ports["imap"]), Raw(srv.ports["imap"])
        for c in (watcher, r):
            assert c.cmd(f'LOGIN {address} "{password}"'.encode(), b"l").startswith(b"l OK")
        assert watcher.cmd(b"SELECT INBOX", b"s").startswith(b"s OK")
        before = {p.relative_to(inbox): p.stat().st_size for sub in ("new", "cur") for p in (inbox / sub).iterdir()}
        uidlist = (inbox / UIDLIST).read_bytes()
        for size in (100_000, 300_000):          # held in memory, then written to tmp/ as they arrive
            body = b"Subject: s\r\n\r\n" + (b"z" * 998 + b"\r\n") * (size // 1000)
            command = b"APPEND INBOX" + b"".join(b" {%d+}\r\n" % len(body) + body for _ in range(3))
            fs.fill(leave=int(2.5 * size))
            reply = r.cmd(command)
            assert reply.startswith(b"t1 NO [OVERQUOTA] Not enough disk space"), reply
            assert {p.relative_to(inbox): p.stat().st_size
                    for sub in ("new", "cur") for p in (inbox / sub).iterdir()} == before
            assert (inbox / UIDLIST).read_bytes() == uidlist
            assert list((inbox / "tmp").iterdir()) == []
            watcher.send(b"n0 NOOP\r\n")
            assert watcher.until_tag(b"n0") == [b"n0 OK NOOP completed"]
            fs.unfill()
        reply = r.cmd(command, b"t2")
        assert re.match(rb"t2 OK \[APPENDUID \d+ 2:4\] ", reply), reply
        watcher.send(b"n1 NOOP\r\n")
        lines = watcher.until_tag(b"n1")
        assert b"* 4 EXISTS" in lines, lines
        r.close()
        watcher.close()


def test_over_quota_is_refused_before_the_literal_is_sent(mailserver, user):
    """A synchronising literal past the quota's room gets NO [OVERQUOTA] instead of "+":
    the message is never sent, and never fills tmp/; a large LITERAL+ one is read and refused."""
    md = box(mailserver, user)
    md.set_quota(100_000)
    r = raw_login(mailserver, user)
    r.send(b"t1 APPEND INBOX" + multi(1) + b" {200000}\r\n")
    reply = r.line()
    assert reply.startswith(b"t1 NO [OVERQUOTA]"), reply
    big = b"Subject: big\r\n\r\n" + b"q" * 400_000
    assert r.cmd(b"APPEND INBOX {%d+}\r\n" % len(big) + big, b"t2").startswith(b"t2 NO [OVERQUOTA]")
    assert files(md) == [] and md.quota.usage() == (0, 0)
    assert r.cmd(b"APPEND INBOX" + multi(2), b"t3").startswith(b"t3 OK [APPENDUID ")
    r.close()
