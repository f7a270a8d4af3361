"""SMTP intake on a full or read-only disk: `452 4.3.1 Insufficient system storage` at DATA
(nothing of the message left anywhere), at MAIL FROM already below the free-space reserve
(the SIZE a client announces counted), the session and IMAP reads going on, and mail
accepted again as soon as there is room, without a restart."""
from __future__ import annotations

import base64
import imaplib
import json
import os
import smtplib
import threading
import time

import pytest

from engine import directory_edit, settings as settings_mod
from helpers_diskfull import full_disk_root, settle_cache, stored_files
from helpers_server import mailctl, running_server, serve_process

PW = "alice-password-1"
INSUFFICIENT = (452, b"4.3.1 Insufficient system storage")
BODY = b"From: carol@example.org\r\nTo: alice@example.com\r\nSubject: full\r\n\r\n" + b"x" * 200_000 + b"\r\n"


def send(client: smtplib.SMTP, rcpt: str | list[str] = "alice@example.com", body: bytes = BODY,
         size: int | None = None):
    """One transaction; the reply to the command that ended it."""
    options = [f"SIZE={size}"] if size is not None else []
    client.ehlo_or_helo_if_needed()
    code, text = client.mail("carol@example.org", options)
    if code != 250:
        client.rset()
        return code, text
    for address in [rcpt] if isinstance(rcpt, str) else rcpt:
        assert client.rcpt(address)[0] == 250
    return client.data(body)


def imap_reads_inbox(port: int) -> int:
    with imaplib.IMAP4("127.0.0.1", port) as imap:
        imap.login("alice@example.com", PW)
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK"
        typ, fetched = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and b"Subject:" in fetched[0][1]
        return int(data[0])


@pytest.mark.parametrize("kind", ["tmpfs", "ext4"])
def test_data_on_a_full_disk_gets_452_leaves_nothing_and_recovers(tmp_path, kind):
    with full_disk_root(tmp_path, kind, accounts={"alice@example.com": PW}) as (fs, root), \
            running_server(root) as srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
            assert send(c)[0] == 250                      # a first message, read over IMAP below
        assert imap_reads_inbox(srv.ports["imap"]) == 1
        before = stored_files(root)
        fs.fill()
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
            assert send(c) == INSUFFICIENT
            assert stored_files(root) == before           # no copy, no tmp file left
            assert imap_reads_inbox(srv.ports["imap"]) == 1
            assert send(c) == INSUFFICIENT                # the session goes on
            fs.unfill()
            settle_cache()
            assert send(c)[0] == 250                      # room again: taken, same session
        assert imap_reads_inbox(srv.ports["imap"]) == 2


def test_data_for_the_queue_on_a_full_disk_gets_452_and_queues_nothing(tmp_path):
    with full_disk_root(tmp_path, settings={"relay.trusted_networks": ["127.0.0.1/32"]}) as (fs, root), \
            running_server(root) as srv:
        fs.fill()
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"]) as c:
            assert send(c, "someone@far.example") == INSUFFICIENT
            assert stored_files(root) == []               # no body without envelope, no envelope
            fs.unfill()
            code, text = send(c, "someone@far.example")
        assert code == 250
        qid = text.decode().rsplit(" ", 1)[1]
        assert stored_files(root) == [f"queue/deferred/{qid}.toml", f"queue/messages/{qid}.eml"]


def test_data_on_a_read_only_file_system_gets_452(tmp_path):
    with full_disk_root(tmp_path, accounts={"alice@example.com": PW}) as (fs, root), \
            running_server(root) as srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
            assert c.ehlo()[0] == 250 and c.mail("carol@example.org")[0] == 250
            assert c.rcpt("alice@example.com")[0] == 250
            fs.read_only()                                 # between RCPT and DATA
            try:
                assert c.data(BODY) == INSUFFICIENT
                settle_cache()
                assert c.mail("carol@example.org") == INSUFFICIENT     # now already at MAIL FROM
            finally:
                fs.read_write()
            settle_cache()
            assert send(c)[0] == 250
        assert len(stored_files(root)) == 1


def test_mail_from_below_the_reserve_gets_452_counting_size(tmp_path):
    # max 4 MB messages: a reserve of 6 MB (1.5 x); 8 MB left free
    settings = {"limits.max_message_size_mb": 4, "limits.min_free_space_mb": 0}
    with full_disk_root(tmp_path, size_mb=32, accounts={"alice@example.com": PW}, settings=settings) as (fs, root), \
            running_server(root) as srv:
        fs.fill(leave=8 * 1024 * 1024)
        settle_cache()
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
            c.ehlo()
            assert send(c, size=1024 * 1024)[0] == 250             # 8 - 1 >= 6
            assert send(c, size=3 * 1024 * 1024) == INSUFFICIENT   # 8 - 3 < 6: refused before DATA
            fs.fill(leave=5 * 1024 * 1024)
            settle_cache()
            assert send(c) == INSUFFICIENT                         # below the reserve, no SIZE given
            assert c.noop()[0] == 250
            fs.unfill()
            settle_cache()
            assert send(c, size=3 * 1024 * 1024)[0] == 250


def test_min_free_space_mb_raises_the_reserve(tmp_path):
    settings = {"limits.max_message_size_mb": 1, "limits.min_free_space_mb": 10}
    with full_disk_root(tmp_path, size_mb=32, accounts={"alice@example.com": PW}, settings=settings) as (fs, root), \
            running_server(root) as srv:
        fs.fill(leave=8 * 1024 * 1024)                             # above 1.5 MB, below 10 MB
        settle_cache()
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
            assert send(c) == INSUFFICIENT
        assert stored_files(root) == []


def test_room_for_the_copies_but_not_the_envelope_leaves_no_copy(tmp_path):
    """A local copy and a queue item (a forward that keeps a copy): the disk has room for
    both message files but not for the envelope. No copy may stay visible, or the
    client's retry would deliver it twice."""
    with full_disk_root(tmp_path, accounts={"alice@example.com": PW}) as (fs, root), \
            running_server(root) as srv:
        directory_edit.set_forward(root, settings_mod.load(root.config_file), "alice@example.com",
                                   ["alice@far.example"], True)
        srv.runtime.reload()
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
            assert send(c)[0] == 250              # the same message once, to measure its files
        first = stored_files(root)
        pages = sum(-(-os.path.getsize(root.path / f) // 4096) for f in first if not f.endswith(".toml"))
        fs.fill(leave=pages * 4096)
        assert fs.free_bytes() == pages * 4096
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
            assert send(c) == INSUFFICIENT
            assert stored_files(root) == first
            fs.unfill()
            assert send(c)[0] == 250
        assert len(stored_files(root)) == 2 * len(first)


def test_status_and_log_show_free_space_and_warn_once_below_the_reserve(tmp_path):
    settings = {"limits.max_message_size_mb": 2, "limits.min_free_space_mb": 0}      # reserve 3 MB
    with full_disk_root(tmp_path, size_mb=16, settings=settings) as (fs, root), serve_process(root):
        disk = json.loads(mailctl(root, "status", "--json").stdout)["disk"]
        assert disk["reserve_bytes"] == 3 * 1024 * 1024 and not disk["below_reserve"]
        assert abs(disk["free_bytes"] - fs.free_bytes()) < 1024 * 1024
        fs.fill(leave=1024 * 1024)
        time.sleep(3)                                       # a few passes of the watch
        disk = json.loads(mailctl(root, "status", "--json").stdout)["disk"]
        assert disk["below_reserve"] and disk["free_bytes"] <= 1024 * 1024
        human = mailctl(root, "status").stdout
        assert "below the reserve, new mail is refused (452 4.3.1)" in human
        fs.unfill()
        time.sleep(3)
        assert "WARNING" not in mailctl(root, "status").stdout
        log = (root.log_dir / "mailctl.log").read_text()
    assert log.count("below the reserve of 3.0 MB (limits.min_free_space_mb)") == 1
    assert log.count("free again (reserve 3.0 MB): accepting mail") == 1


def test_a_session_state_write_on_a_full_disk_is_answered_not_a_local_error(tmp_path, caplog):
    """A failed AUTH records the failure for auto-ban (a write): on a full disk the client
    gets a reply and the session goes on, never 451 with a traceback in the log."""
    with full_disk_root(tmp_path, accounts={"alice@example.com": PW}) as (fs, root), \
            running_server(root) as srv:
        fs.fill()
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"]) as c:
            c.ehlo()
            code, _ = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice@example.com\0wrong").decode())
            assert code in (452, 535)
            assert c.noop()[0] == 250
    assert "internal error" not in caplog.text


def test_two_sessions_at_once_on_a_nearly_full_disk_leave_no_partial_copy(tmp_path):
    """Two clients send at once with room for about one message: each gets 250 or 452,
    and what is stored is exactly the accepted messages, nothing half-written."""
    with full_disk_root(tmp_path, accounts={"alice@example.com": PW}) as (fs, root), \
            running_server(root) as srv:
        fs.fill(leave=300 * 1024)                          # one 200 KB message fits, not two
        replies = []

        def one():
            with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
                replies.append(send(c))

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        codes = sorted(code for code, _ in replies)
        assert codes in ([250, 452], [452, 452]), replies
        assert all(r == INSUFFICIENT for r in replies if r[0] == 452)
        stored = stored_files(root)
        assert len(stored) == codes.count(250) and all("/new/" in f for f in stored)
        fs.unfill()
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
            assert send(c)[0] == 250


def test_a_copy_committed_before_a_later_one_fails_is_withdrawn(tmp_path):
    """To alice and bob: both copies are written, alice's is committed, then bob's commit
    needs a new block (his maildirsize ends on a block boundary) and the disk has none.
    The client gets 452, so alice's copy must go too, or its retry would give her two."""
    accounts = {"alice@example.com": PW, "bob@example.com": "bob-password-12"}
    with full_disk_root(tmp_path, "ext4", accounts=accounts) as (fs, root), running_server(root) as srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
            code, _ = send(c, ["alice@example.com", "bob@example.com"])
        assert code == 250
        first = stored_files(root)
        block = os.statvfs(fs.path).f_bsize
        def pad(user: str, to_boundary: bool) -> None:
            """Zero delta lines in the user's maildirsize (as valid as any) up to a block
            boundary, or to where the next delta still fits in its block."""
            with open(root.mail_dir / "example.com" / user / "maildirsize", "ab") as f:
                while not to_boundary and (f.tell() % block == 0 or f.tell() % block > block - 64):
                    f.write(b"0 0\n")
                while to_boundary and f.tell() % block:
                    need = block - f.tell() % block
                    f.write(b"0 0\n" if need >= 8 else b"0" * (need - 3) + b" 0\n" if need >= 4 else b"0 0\n")

        pad("alice", False)
        pad("bob", True)
        copies = sum(-(-os.path.getsize(root.path / f) // block) * block for f in first)
        fs.fill(leave=copies + 64 * block)
        with open(fs.path / ".filler-exact", "ab", buffering=0) as f:
            while fs.free_bytes() > copies:
                f.write(b"\0" * block)
                os.fsync(f.fileno())
        assert fs.free_bytes() == copies
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
            assert send(c, ["alice@example.com", "bob@example.com"]) == INSUFFICIENT
            assert stored_files(root) == first
            fs.unfill()
            assert send(c, ["alice@example.com", "bob@example.com"])[0] == 250
        assert len(stored_files(root)) == 2 * len(first)
