#!/usr/bin/env python3
"""Memory of the IMAP serving processes: a large selected mailbox, and many idle sessions.

    python bench/imap_memory.py [--count 100000] [--sessions 500] [--processes 2]

1. Fills the account's INBOX with --count messages (the shared driver's generator,
   ../shared/bench/imap-bench.py), starts `mailctl serve --processes N`, and opens one
   session per serving process (until every process holds one), each selecting INBOX and
   fetching FLAGS of every message, then the headers a client shows and every ENVELOPE.
   Prints each serving process's RSS (and the supervisor's) after each step.
2. Opens --sessions more logged-in sessions that sit in IDLE on a small folder, and prints
   the serving processes' RSS again, and the growth per session.

Goals (issue 13): at most 150 MB RSS per serving process with a 100,000-message mailbox
selected; under 150 MB for 500 idle sessions. Only when ../shared exists beside the checkout.
"""
from __future__ import annotations

import argparse
import imaplib
import importlib.util
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imap as imapbench  # noqa: E402 - bench/imap.py beside this file: the same root and server start

SHARED = imapbench.SHARED
# what Thunderbird asks for on opening a folder it has not cached
HEADER_FETCH = ("(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date "
                "Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])")


def load_driver():
    spec = importlib.util.spec_from_file_location("imap_bench_driver", SHARED / "imap-bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return sorted(found)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def serving_pid(conn: imaplib.IMAP4, candidates: list[int]) -> int | None:
    """Which serving process holds this connection: the one with its socket's inode."""
    sock = conn.socket()
    # the server's end of our connection is the peer of our local address
    local = "%08X:%04X" % (int.from_bytes(socket.inet_aton("127.0.0.1"), "little"), sock.getsockname()[1])
    for pid in candidates:
        try:
            with open(f"/proc/{pid}/net/tcp") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        inodes = {fields[9] for fields in (ln.split() for ln in lines) if fields[2] == local}
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    return None


def report(label: str, supervisor: int, workers: list[int]) -> dict[int, float]:
    sizes = {pid: rss_mb(pid) for pid in workers}
    print(f"{label}: " + ", ".join(f"process {pid} {mb:.0f} MB" for pid, mb in sizes.items())
          + f"; supervisor {rss_mb(supervisor):.0f} MB", flush=True)
    return sizes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--processes", type=int, default=2)
    args = ap.parse_args()
    if not (SHARED / "imap-bench.py").exists():
        print(f"{SHARED}/imap-bench.py not found; nothing to do")
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.sessions * 2 + 100)), hard))
    driver = load_driver()
    work = Path(tempfile.mkdtemp(prefix="mailctl-imap-memory-"))
    root = imapbench.make_root(work / "root")
    maildir = root.mail_dir / "example.test" / "alice"
    started = time.monotonic()
    driver.fill_maildir(str(maildir), args.count, imapbench.USER, 1)
    print(f"filled {args.count} messages in {time.monotonic() - started:.0f} s", flush=True)
    proc, ports = imapbench.start_ours(root, args.processes)
    held: list[imaplib.IMAP4] = []
    try:
        time.sleep(1)
        workers = children(proc.pid)
        report("started", proc.pid, workers)
        selected_in: set[int] = set()
        tries = 0
        while selected_in != set(workers) and tries < 20 * len(workers):
            tries += 1
            conn = imaplib.IMAP4("127.0.0.1", ports["imap"])
            conn.login(imapbench.USER, imapbench.PASSWORD)
            pid = serving_pid(conn, workers)
            if pid in selected_in:
                conn.logout()
                continue
            started = time.monotonic()
            conn.select("INBOX")
            conn.fetch("1:*", "(UID FLAGS)")
            print(f"process {pid}: SELECT + FETCH 1:* (UID FLAGS) {time.monotonic() - started:.1f} s", flush=True)
            selected_in.add(pid)
            held.append(conn)
        report(f"{args.count} messages selected", proc.pid, workers)
        for conn in held:
            started = time.monotonic()
            conn.fetch("1:*", HEADER_FETCH)
            conn.fetch("1:*", "(ENVELOPE)")
            print(f"headers and ENVELOPE of every message: {time.monotonic() - started:.1f} s", flush=True)
        with_large = report(f"{args.count} messages selected, headers fetched", proc.pid, workers)
        conn = held[0]
        conn.create("small")
        before = {pid: rss_mb(pid) for pid in workers}
        for _ in range(args.sessions):
            idle = imaplib.IMAP4("127.0.0.1", ports["imap"])
            idle.login(imapbench.USER, imapbench.PASSWORD)
            idle.select("small")
            idle.send(b"i1 IDLE\r\n")
            idle.readline()
            held.append(idle)
        time.sleep(1)
        after = report(f"+{args.sessions} idle sessions", proc.pid, workers)
        growth = sum(after.values()) - sum(before.values())
        print(f"idle sessions: {growth:.0f} MB in all, {growth * 1024 / args.sessions:.0f} KB per session", flush=True)
        print(f"largest serving process with {args.count} selected: {max(with_large.values()):.0f} MB "
              f"(goal 150 MB); {args.sessions} idle sessions: {growth:.0f} MB (goal under 150 MB)")
    finally:
        for conn in held:
            try:
                conn.shutdown()
            except OSError:
                pass
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
