#!/usr/bin/env python3
"""PREVIEW (RFC 8970) speed: `FETCH 1:* (PREVIEW)` on one INBOX of N varied messages
(plain, quoted-printable, HTML, multipart/alternative, a 200 KB attachment after the
text every tenth), served by `mailctl serve` and by Dovecot (tests/dovecot.py) on the
same message files. Each server: the first FETCH (previews made from the files) and the
median of three more on the same connection (ours: kept per process; Dovecot: in its
index cache). Speed is measured here, never asserted in tests.

    python bench/imap_preview.py [--count 10000]
"""
from __future__ import annotations

import argparse
import base64
import imaplib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from imap import PASSWORD, USER, make_root, start_ours  # noqa: E402  (bench/imap.py)

# PREVIEW, and BODYSTRUCTURE beside it: another item both servers make from the files
# (and keep: Dovecot in its index cache, we per process: engine/imap/structures.py), for scale.
ITEMS = ("PREVIEW", "BODYSTRUCTURE")
ATTACHMENT = base64.encodebytes(bytes(range(256)) * 800)        # 200 KB of base64 lines


def message(i: int) -> bytes:
    head = (f"From: Sender {i} <s{i}@example.org>\nTo: {USER}\nSubject: message {i}\n"
            f"Date: Mon, 02 Jan 2023 10:00:00 +0000\nMessage-ID: <{i}@example.org>\nMIME-Version: 1.0\n")
    text = f"Hello,\n\nthis is message {i}, with a few lines of text.\n" + "Some more words here. " * 40 + "\n"
    kind = i % 10
    if kind == 9:
        return (head + "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
                + text + "--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
                ).encode() + ATTACHMENT + b"--b--\n"
    if kind in (3, 6):
        html = "<html><body><p>" + text.replace("\n", "<br>") + "</p></body></html>\n"
        return (head + "Content-Type: multipart/alternative; boundary=a\n\n--a\nContent-Type: text/plain\n\n"
                + text + "--a\nContent-Type: text/html; charset=utf-8\n\n" + html + "--a--\n").encode()
    if kind == 5:
        return (head + "Content-Type: text/html; charset=utf-8\n\n<html><head><style>p{}</style></head>"
                "<body><p>" + text + "</p></body></html>\n").encode()
    if kind == 7:
        return (head + "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: "
                "quoted-printable\n\n> quoted\nCaf=E9 " + text).encode()
    return (head + "Content-Type: text/plain; charset=utf-8\n\n" + text).encode()


def fill(inbox: Path, count: int) -> None:
    """Files straight into cur/, named as a delivery names them (seconds first)."""
    start = int(time.time()) - count
    for i in range(count):
        (inbox / "cur" / f"{start + i}.M{i}P1.bench:2,").write_bytes(message(i))


def timings(port: int, item: str, runs: int = 3) -> tuple[float, float]:
    c = imaplib.IMAP4("127.0.0.1", port, timeout=900)
    c.login(USER, PASSWORD)
    c.select("INBOX", readonly=True)
    times = []
    for _ in range(1 + runs):
        started = time.perf_counter()
        typ, data = c.fetch("1:*", f"({item})")
        times.append(time.perf_counter() - started)
        assert typ == "OK", data
    c.logout()
    return times[0], statistics.median(times[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=10000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailctl-preview-bench-"))
    try:
        root = make_root(work / "root")
        inbox = root.mail_dir / "example.test" / "alice"
        fill(inbox, args.count)
        proc, ports = start_ours(root, processes=1)
        try:
            ours = {item: timings(ports["imap"], item) for item in ITEMS}
        finally:
            proc.terminate()
            proc.wait(30)
        import dovecot
        theirs = None
        if dovecot.available():
            with dovecot.dovecot_server(root.path, {USER: PASSWORD}) as dc:
                theirs = {item: timings(dc.imap_port, item) for item in ITEMS}
        print(f"FETCH 1:* (...), {args.count} messages                 ours ms   dovecot ms   ratio")
        for item in ITEMS:
            for i, label in ((0, "first"), (1, "again (median of 3)")):
                mine = ours[item][i] * 1000
                other = theirs[item][i] * 1000 if theirs else float("nan")
                print(f"  {item + ' ' + label:44} {mine:9.0f} {other:12.0f} {mine / other:7.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
