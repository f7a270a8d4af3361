#!/usr/bin/env python3
"""Command latency under issue 13's stress profile, ours and (with --dovecot) Dovecot's.

    python bench/imap_latency.py [--clients 10] [--folders 20] [--messages 300]
                                 [--seconds 30] [--processes 2] [--dovecot] [--seed 1]

One account with --folders folders (and INBOX) of --messages messages each, written as
plain Maildir files into the tree of `mailctl serve --processes N` (bench/imap.py's root
and start) and, with --dovecot, into the reference Dovecot's (../shared/bench/stack-up.sh).
A delivery thread drops a message into a random folder's new/ every --deliver-ms, as an
MDA does. --clients threads each loop: LOGIN, then a random order of LIST, STATUS,
SELECT, FETCH, STORE, EXPUNGE, APPEND (each on a random folder), then LOGOUT; every
command timed at the client. Both servers get one untimed pass over every folder first
(Dovecot builds its indexes, we our uidlists). Prints per-command count, average and p95
in milliseconds for each server and the ratio. Speed is measured here, never asserted in
tests. Only when ../shared exists beside the checkout (for --dovecot).
"""
from __future__ import annotations

import argparse
import imaplib
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imap as imapbench  # noqa: E402 - bench/imap.py beside this file: the same root and server start

VMAIL = 5000     # the reference stack's mail uid and gid (stack-up.sh VMAIL_UID/GID)
COMMANDS = ["LOGIN", "LIST", "STATUS", "SELECT", "FETCH", "STORE", "EXPUNGE", "APPEND", "LOGOUT"]


def message(n: int, folder: str) -> bytes:
    body = "".join(f"line {i} of message {n}, some text to make it a typical size.\r\n" for i in range(30))
    return (f"From: Sender {n % 17} <s{n % 17}@example.org>\r\nTo: alice@example.test\r\n"
            f"Subject: message {n} in {folder}\r\nDate: Sat, 05 Dec 2026 07:00:00 +0000\r\n"
            f"Message-ID: <{n}.{folder}@bench>\r\n\r\n{body}").encode()


class Reference(imapbench.Reference):
    """The reference stack on ports of its own: bench/imap.py's may be running meanwhile."""
    PORTS = {"SMTP_PORT": "23525", "SUBMISSION_PORT": "23587", "IMAP_PORT": "23143", "POP3_PORT": "23110"}

    def __init__(self, work: Path, perf: bool):
        super().__init__(work)
        self.env["DOVECOT_PERF"] = "1" if perf else "0"


class Tree:
    """Writes the folders and messages as plain Maildir++ files (what an MDA or a
    migration leaves), the same for both servers."""

    def __init__(self, maildir: Path, owner: int | None):
        self.maildir, self.owner = maildir, owner
        self.counter = 0
        self.lock = threading.Lock()

    def folder_dir(self, name: str) -> Path:
        return self.maildir if name == "INBOX" else self.maildir / f".{name}"

    def make(self, folders: list[str], count: int) -> None:
        for name in ["INBOX", *folders]:
            d = self.folder_dir(name)
            for sub in ("cur", "new", "tmp"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            if name != "INBOX":
                (d / "maildirfolder").touch()
            for _ in range(count):
                self.drop(name, seen=random.random() < 0.7)
        if self.owner is not None:
            for dirpath, _, files in os.walk(self.maildir):
                os.chown(dirpath, self.owner, self.owner)
                for f in files:
                    os.chown(os.path.join(dirpath, f), self.owner, self.owner)

    def drop(self, name: str, seen: bool = False) -> None:
        """One message into new/ (or cur/ with \\Seen), through tmp/ as Maildir says."""
        with self.lock:
            self.counter += 1
            n = self.counter
        data = message(n, name)
        base = f"{int(time.time())}.M{n}P{os.getpid()}.bench,S={len(data)}"
        d = self.folder_dir(name)
        tmp = d / "tmp" / base
        tmp.write_bytes(data)
        if self.owner is not None:
            os.chown(tmp, self.owner, self.owner)
        os.rename(tmp, d / "cur" / f"{base}:2,S" if seen else d / "new" / base)


class Client(threading.Thread):
    def __init__(self, port: int, user: str, folders: list[str], stop: threading.Event, seed: int):
        super().__init__(daemon=True)
        self.port, self.user, self.folders, self.stop = port, user, folders, stop
        self.rand = random.Random(seed)
        self.times: dict[str, list[float]] = {c: [] for c in COMMANDS}
        self.errors = 0

    def timed(self, name: str, fn, *args):
        started = time.perf_counter()
        typ, data = fn(*args)
        self.times[name].append(time.perf_counter() - started)
        return typ, data

    def track(self, conn: imaplib.IMAP4, exists: int) -> int:
        """The message count after the untagged EXPUNGE and EXISTS other sessions caused."""
        expunged = conn.untagged_responses.pop("EXPUNGE", [])
        counts = conn.untagged_responses.pop("EXISTS", [])
        # the order of EXISTS and EXPUNGE is lost here: assume the expunges came last
        return (int(counts[-1]) if counts else exists) - len(expunged)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.session()
            except (imaplib.IMAP4.error, OSError) as e:
                self.errors += 1
                if self.errors < 5:
                    print(f"client error: {e}", file=sys.stderr)

    def session(self) -> None:
        conn = imaplib.IMAP4("127.0.0.1", self.port)
        self.timed("LOGIN", conn.login, self.user, imapbench.PASSWORD)
        selected = False
        ops = ["LIST", "STATUS", "SELECT", "FETCH", "STORE", "EXPUNGE", "APPEND"] * 2
        self.rand.shuffle(ops)
        for op in ops:
            if self.stop.is_set():
                break
            folder = self.rand.choice(self.folders)
            if op == "LIST":
                self.timed("LIST", conn.list, '""', "*")
            elif op == "STATUS":
                self.timed("STATUS", conn.status, folder, "(MESSAGES UNSEEN UIDNEXT)")
            elif op == "APPEND":
                self.timed("APPEND", conn.append, folder, None, None, message(self.rand.randrange(10**6), folder))
            else:
                if op == "SELECT" or not selected:
                    typ, data = self.timed("SELECT", conn.select, folder)
                    selected = typ == "OK"
                    exists = int(data[0]) if selected else 0
                    conn.untagged_responses.pop("EXPUNGE", None)
                    if op == "SELECT" or not exists:
                        continue
                exists = self.track(conn, exists)
                if exists < 1:
                    continue
                if op == "FETCH":
                    first = self.rand.randint(1, max(1, exists - 19))
                    self.timed("FETCH", conn.fetch, f"{first}:{min(first + 19, exists)}", "(UID FLAGS RFC822.SIZE ENVELOPE)")
                elif op == "STORE":
                    self.timed("STORE", conn.store, str(self.rand.randint(1, exists)), "+FLAGS", "(\\Flagged)")
                elif op == "EXPUNGE":
                    conn.store(str(self.rand.randint(1, exists)), "+FLAGS", "(\\Deleted)")
                    typ, data = self.timed("EXPUNGE", conn.expunge)
                    exists -= sum(1 for d in data if d)
                exists = self.track(conn, exists)
        started = time.perf_counter()
        conn.logout()
        self.times["LOGOUT"].append(time.perf_counter() - started)


def warm(port: int, user: str, folders: list[str]) -> None:
    conn = imaplib.IMAP4("127.0.0.1", port)
    conn.login(user, imapbench.PASSWORD)
    conn.list('""', "*")
    for name in folders:
        typ, data = conn.select(name)
        if int(data[0]):
            conn.fetch("1:*", "(UID FLAGS RFC822.SIZE ENVELOPE)")
    conn.logout()


def run(label: str, port: int, user: str, tree: Tree, folders: list[str], args) -> dict[str, list[float]]:
    print(f"== {label}: warming", flush=True)
    warm(port, user, folders)
    stop = threading.Event()
    clients = [Client(port, user, folders, stop, args.seed * 1000 + i) for i in range(args.clients)]

    def deliver():
        rand = random.Random(args.seed)
        while not stop.wait(args.deliver_ms / 1000):
            tree.drop(rand.choice(folders))
    deliverer = threading.Thread(target=deliver, daemon=True)
    print(f"== {label}: {args.clients} clients for {args.seconds} s", flush=True)
    for c in clients:
        c.start()
    deliverer.start()
    time.sleep(args.seconds)
    stop.set()
    for c in clients:
        c.join(60)
    deliverer.join(5)
    times = {c: [t for cl in clients for t in cl.times[c]] for c in COMMANDS}
    errors = sum(c.errors for c in clients)
    if errors:
        print(f"{label}: {errors} client errors")
    return times


def summary(samples: list[float]) -> tuple[int, float, float]:
    if not samples:
        return 0, float("nan"), float("nan")
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return len(samples), statistics.fmean(samples) * 1000, p95 * 1000


def print_table(ours: dict, theirs: dict | None) -> None:
    head = f"{'command':8} {'n':>6} {'avg ms':>8} {'p95 ms':>8}"
    if theirs is not None:
        head += f" {'dc n':>6} {'dc avg':>8} {'dc p95':>8} {'avg x':>6} {'p95 x':>6}"
    print("\n" + head)
    for c in COMMANDS:
        n, avg, p95 = summary(ours[c])
        line = f"{c:8} {n:6d} {avg:8.2f} {p95:8.2f}"
        if theirs is not None:
            dn, davg, dp95 = summary(theirs[c])
            line += f" {dn:6d} {davg:8.2f} {dp95:8.2f} {avg / davg if davg else float('nan'):6.2f} " \
                    f"{p95 / dp95 if dp95 else float('nan'):6.2f}"
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--folders", type=int, default=20)
    ap.add_argument("--messages", type=int, default=300, help="messages per folder at the start")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--deliver-ms", type=float, default=50, help="one delivery every this many ms")
    ap.add_argument("--processes", type=int, default=2, help="mailctl serving processes")
    ap.add_argument("--dovecot", action="store_true", help="also run the reference Dovecot (stack-up.sh)")
    ap.add_argument("--dovecot-perf", type=int, choices=(0, 1), default=1,
                    help="1: Dovecot's high-performance mode (processes reused, as our serving "
                         "processes are); 0: a new imap process per connection")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep-running", action="store_true",
                    help="after our run, print the serving processes' pids and wait for Enter (profiling)")
    args = ap.parse_args()
    random.seed(args.seed)
    folders = ["INBOX"] + [f"folder{i:02d}" for i in range(args.folders)]
    work = Path(tempfile.mkdtemp(prefix="mailctl-latency-bench-"))
    root = imapbench.make_root(work / "root")
    maildir = root.mail_dir / "example.test" / "alice"
    Tree(maildir, None).make(folders[1:], args.messages)
    reference = Reference(work, args.dovecot_perf) if args.dovecot else None
    theirs = None
    proc, ports = imapbench.start_ours(root, args.processes)
    try:
        ours = run("mailctl", ports["imap"], imapbench.USER, Tree(maildir, None), folders, args)
        if args.keep_running:
            input(f"serving processes: children of {proc.pid}; Enter to go on ")
    finally:
        proc.terminate()
        proc.wait(30)
    if reference is not None:
        try:
            if reference.up():
                # the stack's account exists once Dovecot has served it: log in once first
                warm(int(Reference.PORTS["IMAP_PORT"]), "alice", ["INBOX"])
                tree = Tree(reference.maildir, VMAIL)
                tree.make(folders[1:], args.messages)
                theirs = run("dovecot", int(Reference.PORTS["IMAP_PORT"]), "alice", tree, folders, args)
        finally:
            reference.down()
    print_table(ours, theirs)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
