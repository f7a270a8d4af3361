#!/usr/bin/env python3
"""The bench's header fetch over a COMPRESS=DEFLATE session (RFC 4978): ours and Dovecot
(with imap_zlib) on the same generated mailbox, each plain and compressed: bytes on the
wire from the server and the wall time of the fetch (warm: the best of six).

    python bench/imap_compress.py [--count 10000] [--no-dovecot] [--root-of OTHER_CHECKOUT]

--root-of runs another checkout's server instead of this one (to check that plain sessions
are not slowed by a change). Dovecot runs through tests/dovecot.py, as the interop tests
run it (needs /usr/sbin/dovecot; as root it lends the tree to its mail user).
"""
from __future__ import annotations

import argparse
import random
import shutil
import socket
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import imap as bench_imap  # noqa: E402 - bench/imap.py: the root and server it benches

HEADER_FETCH = b"FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"
THUNDERBIRD = (b"UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date "
               b"Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])")
ZLIB_CONF = "mail_plugins = $mail_plugins zlib\nprotocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n"


def fill(maildir: Path, count: int) -> None:
    """count messages straight into cur/ (the servers number them at the first SELECT)."""
    rng = random.Random(7)
    words = "report meeting invoice lunch patch release question budget travel draft".split()
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        text = (f"From: {rng.choice(words).title()} Sender <s{rng.randrange(500)}@example.org>\n"
                f"To: Alice <alice@example.test>\nSubject: {' '.join(rng.sample(words, 4))} #{i}\n"
                f"Date: Mon, {1 + i % 28:02d} Jan 2024 {i % 24:02d}:{i % 60:02d}:00 +0000\n"
                f"Message-ID: <{i}.{rng.randrange(10 ** 9)}@example.org>\nContent-Type: text/plain\n\n"
                + " ".join(rng.choice(words) for _ in range(150)) + "\n")
        data = text.encode()
        vsize = len(data) + data.count(b"\n")
        (maildir / "cur" / f"{1700000000 + i}.M{i}P1.bench,S={len(data)},W={vsize}:2,S").write_bytes(data)


class Client:
    """A raw IMAP client that counts the bytes on the wire, with or without DEFLATE."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = b""
        self.z = None
        self.wire_in = 0
        self.line()

    def recv(self) -> bytes:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("closed")
        self.wire_in += len(data)
        return self.z[1].decompress(data) if self.z else data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.buf += self.recv()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, tag: bytes, text: bytes) -> bytes:
        """Send a command; read (skipping literals' bytes fast) to its tagged line."""
        data = tag + b" " + text + b"\r\n"
        if self.z:
            data = self.z[0].compress(data) + self.z[0].flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)
        end = b"\r\n" + tag + b" "
        self.buf = b"\r\n" + self.buf       # the tagged line may come first
        pos = 0
        while True:
            i = self.buf.find(end, max(0, pos - len(end)))
            if i >= 0 and b"\r\n" in self.buf[i + 2:]:
                stop = self.buf.index(b"\r\n", i + 2)
                reply, self.buf = self.buf[i + 2:stop], self.buf[stop + 2:]
                return reply
            pos = len(self.buf) if i < 0 else i
            self.buf += self.recv()

    def compress(self) -> None:
        assert self.cmd(b"z", b"COMPRESS DEFLATE").startswith(b"z OK"), "COMPRESS refused"
        self.z = (zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15))
        if self.buf:
            self.buf = self.z[1].decompress(self.buf)


def measure(port: int, user: str, compressed: bool) -> dict:
    c = Client(port)
    assert c.cmd(b"a", b'LOGIN "%s" "%s"' % (user.encode(), bench_imap.PASSWORD.encode())).startswith(b"a OK")
    if compressed:
        c.compress()
    assert c.cmd(b"b", b"SELECT INBOX").startswith(b"b OK")
    out = {}
    for label, command in (("header fetch", HEADER_FETCH), ("Thunderbird-style", THUNDERBIRD)):
        best, wire = None, 0
        for n in range(7):          # the first one warms the caches
            before = c.wire_in
            start = time.perf_counter()
            reply = c.cmd(b"f%d" % n, command)
            took = time.perf_counter() - start
            assert b" OK" in reply, reply
            if n:
                best = took if best is None else min(best, took)
                wire = c.wire_in - before
        out[label] = (best, wire)
    c.sock.close()
    return out


def report(name: str, results: dict) -> None:
    for mode, ops in results.items():
        for label, (took, wire) in ops.items():
            print(f"{name:8} {mode:10} {label:18} {took * 1000:9.1f} ms {wire / 1024:10.1f} KiB on the wire", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--no-dovecot", action="store_true")
    ap.add_argument("--root-of", help="another checkout whose server to run (default: this one)")
    ap.add_argument("--modes", default="plain,deflate", help="sessions to measure (plain, deflate)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailctl-compress-bench-"))
    root = bench_imap.make_root(work / "root")
    maildir = root.mail_dir / "example.test" / "alice"
    fill(maildir, args.count)
    if args.root_of:
        bench_imap.REPO = Path(args.root_of).resolve()
    proc, ports = bench_imap.start_ours(root, 1)
    try:
        ours = {mode: measure(ports["imap"], bench_imap.USER, mode == "deflate") for mode in args.modes.split(",")}
    finally:
        proc.terminate()
        proc.wait(30)
    report("mailctl", ours)
    if not args.no_dovecot:
        import dovecot
        if not dovecot.available():
            print("dovecot not installed: no reference figures")
            return 0
        with dovecot.dovecot_server(root.path, {bench_imap.USER: bench_imap.PASSWORD},
                                    extra_config=ZLIB_CONF) as dc:
            theirs = {mode: measure(dc.imap_port, bench_imap.USER, mode == "deflate")
                      for mode in args.modes.split(",")}
        report("dovecot", theirs)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
