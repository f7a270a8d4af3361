"""SEARCH BODY and TEXT over a whole folder through a real `mailctl serve`: a message is
ruled out from the file as stored (LF line ends) before it is copied to CRLF and parsed,
which must give the same answers as the message as served, and the search holds one
message's content at a time, not every message it read."""
from __future__ import annotations

import imaplib
import os
import time

import pytest

from engine.maildir import Maildir
from helpers_mail import PASSWORD
from helpers_process import PeakRss, rss_mb, serving_pid
from helpers_server import make_root, serve_process

USER = "alice@example.com"
MESSAGES = 1200
BODY_KB = 48             # 1200 x 48 KB: 58 MB of content, 116 MB as CRLF copies and parses
GROWTH_MB = 25           # held to the end, every message's content made the RSS grow by ~60 MB


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("searchbody"), accounts={USER: PASSWORD},
                     settings={"auth.allow_plaintext": True, "queue.offline": True})
    with serve_process(root, args=("--processes", "1")) as proc:
        yield root, proc


def _write(folder_path, name: str, data: bytes) -> None:
    """A message file as a delivery agent leaves it in new/ (no size in its name)."""
    with open(os.path.join(folder_path, "new", name), "wb") as f:
        f.write(data)


def _login(proc, folder: str) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", proc.ports["imap"], timeout=120)
    imap.login(USER, PASSWORD)
    imap.create(folder)
    return imap


def _search(imap, *criteria) -> list[int]:
    typ, data = imap.uid("SEARCH", *criteria)
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


def test_search_body_of_a_large_folder_holds_one_message_at_a_time(server):
    root, proc = server
    imap = _login(proc, "Big")
    md = Maildir.for_account(root, "example.com", "alice")
    line = b"plain text of a long message, nothing to find in it, line after line.\n"
    body = line * (BODY_KB * 1024 // len(line))
    for i in range(MESSAGES):
        marker = b"needle xyzzy here\n" if i % 400 == 7 else b""
        _write(md.folder("Big").path, f"{1700000000 + i}.M{i}P1.host",
               b"From: u%d@example.org\nSubject: message %d\n\n" % (i, i) + body + marker)
    typ, data = imap.select("Big")
    assert data == [str(MESSAGES).encode()]
    pid = serving_pid(imap.sock, proc.proc.pid)
    assert _search(imap, "SUBJECT", '"message 1"')          # code paths warm, index made
    time.sleep(0.5)
    start = rss_mb(pid)
    with PeakRss(pid) as peak:
        found = _search(imap, "BODY", "xyzzy")
    assert found == [8, 408, 808]
    print(f"\nSEARCH BODY RSS MB: start {start:.1f}, peak {peak.peak_mb:.1f}")
    assert peak.peak_mb - start < GROWTH_MB
    imap.logout()


def test_needles_with_line_ends_and_without_match_as_the_message_is_served(server):
    """The stored file has LF (or CRLF, or lone CR) line ends, IMAP serves CRLF: a needle
    with CRLF in it is looked for in the message as served, one without in the file."""
    root, proc = server
    imap = _login(proc, "Ends")
    folder = Maildir.for_account(root, "example.com", "alice").folder("Ends").path
    _write(folder, "1700000001.M1P1.host", b"Subject: lf\n\nfirst half\nsecond half\n")
    _write(folder, "1700000002.M2P1.host", b"Subject: crlf\r\n\r\nfirst half\r\nsecond half\r\n")
    _write(folder, "1700000003.M3P1.host", b"Subject: lone cr\n\nfirst half\rsecond half\n")
    _write(folder, "1700000004.M4P1.host", b"Subject: other\n\nnothing here\n")
    imap.select("Ends")
    assert _search(imap, "BODY", '"half"') == [1, 2, 3]
    assert _search(imap, "TEXT", '"lone cr"') == [3]
    # "half\r\nsecond" as a literal: found where the line ends are LF or CRLF on disk
    imap.literal = b"half\r\nsecond"
    assert _search(imap, "BODY") == [1, 2]
    imap.literal = b"half\r\nsecond"
    assert _search(imap, "TEXT") == [1, 2]
    assert _search(imap, "BODY", '"half second"') == []
    imap.logout()
