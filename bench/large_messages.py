#!/usr/bin/env python3
"""Memory of a serving process around large messages: RSS (VmRSS) at the start, the peak
while each of IMAP APPEND, IMAP FETCH BODY[], SMTP DATA and POP3 RETR of one message is
under way, and after it, on a real `mailctl serve` (one serving process).

    python bench/large_messages.py [--mb 60]

The tests (tests/test_large_messages.py) check the same figures against fixed bounds:
growth while under way < 20 MB, afterwards near the start.
"""
from __future__ import annotations

import argparse
import imaplib
import poplib
import smtplib
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from helpers_process import PeakRss, rss_mb, serving_pid  # noqa: E402 - after sys.path is set
from helpers_server import make_root, serve_process  # noqa: E402 - after sys.path is set

USER, PASSWORD = "alice@example.com", "secret-pass-1"


def message(mb: int) -> bytes:
    line = b"x" * 76 + b"\r\n"
    head = b"From: carol@example.org\r\nTo: alice@example.com\r\nSubject: big\r\n\r\n"
    return head + line * (mb * 1024 * 1024 // len(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=60, help="message size in MB")
    args = parser.parse_args()
    big = message(args.mb)
    root = make_root(tempfile.mkdtemp(prefix="mailctl-bench-"), accounts={USER: PASSWORD},
                     settings={"auth.allow_plaintext": True, "limits.max_message_size_mb": args.mb + 10,
                               "mailbox.append_limit_mb": args.mb + 10})
    with serve_process(root, args=("--processes", "1")) as proc:
        imap = imaplib.IMAP4("127.0.0.1", proc.ports["imap"], timeout=300)
        imap.login(USER, PASSWORD)
        pid = serving_pid(imap.sock, proc.proc.pid)
        time.sleep(0.5)
        start = rss_mb(pid)
        print(f"{args.mb} MB message; serving process {pid}; RSS at start {start:.1f} MB")

        def report(what: str, peak: PeakRss) -> None:
            time.sleep(1.5)           # a trim put off by a second is included
            after = rss_mb(pid)
            print(f"{what:12} peak {peak.peak_mb:6.1f} (+{peak.peak_mb - start:5.1f})   "
                  f"after {after:6.1f} ({after - start:+5.1f}) MB")

        with PeakRss(pid) as peak:
            imap.append("INBOX", None, None, big)
        report("IMAP APPEND", peak)
        imap.select("INBOX")
        with PeakRss(pid) as peak:
            imap.fetch("1", "(BODY.PEEK[])")
        report("IMAP FETCH", peak)
        imap.logout()
        with PeakRss(pid) as peak, smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=300) as smtp:
            smtp.sendmail("carol@example.org", [USER], big)
        report("SMTP DATA", peak)
        pop = poplib.POP3("127.0.0.1", proc.ports["pop3"], timeout=300)
        pop.user(USER)
        pop.pass_(PASSWORD)
        with PeakRss(pid) as peak:
            pop.retr(1)
        report("POP3 RETR", peak)
        pop.quit()


if __name__ == "__main__":
    main()
