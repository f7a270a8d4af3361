#!/usr/bin/env python3
"""Outbound queue throughput: messages/s from the queue to Postfix's smtp-sink on
127.0.0.1 at 10 concurrent deliveries, and the same load sent by Postfix (the reference
stack in ../shared/bench, when it can start) to the same sink, for the ratio.

    python bench/queue_throughput.py [--messages 2000] [--size 4096] [--passes 3] [--no-postfix]

mailctl: N items are written into the queue of a fresh root, then one Runner (in this
process, as `mailctl serve` runs it) delivers them through a route to the sink; the clock
runs from the first claim until the queue is empty.
Postfix: N messages are put into its queue (received with defer_transports = smtp, then
held with postsuper -h); the defer is lifted, and the clock runs from `postsuper -H ALL;
postqueue -f` until its queue is empty.
Both use relay-style delivery to one host (no DNS) with connection reuse.
Needs Debian's postfix package (smtp-sink, smtp-source). Run as root for the Postfix part.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink(port: int) -> subprocess.Popen:
    cmd = ["smtp-sink", "-c"]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]
    proc = subprocess.Popen(cmd + [f"127.0.0.1:{port}", "1024"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("smtp-sink did not start (install Debian's postfix package)")


def message(i: int, size: int) -> bytes:
    head = (f"From: bench@example.com\r\nTo: rcpt@bench.example\r\nSubject: bench {i}\r\n"
            f"Message-ID: <bench.{i}@example.com>\r\n\r\n").encode()
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return head + body


def mailctl_pass(port: int, n: int, size: int) -> float:
    from engine import settings as settings_mod
    from engine.outbound.runner import Runner
    from engine.queue import Queue
    from engine.root import Root, atomic_write
    from engine.runtime import Runtime
    from engine.newroot import init_root
    tmp = Path(tempfile.mkdtemp(prefix="qbench-"))
    try:
        root = Root(tmp / "root")
        init_root(root, hostname="bench.local", high_ports=True)
        text = settings_mod.render_sample({"queue.concurrency": 10, "dkim.enabled": False})
        text += (f'\n[routes."bench.example"]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n')
        atomic_write(root.config_file, text)
        q = Queue(root)
        data = [message(i, size) for i in range(n)]
        for d in data:
            q.enqueue("bench@example.com", ["rcpt@bench.example"], d)
        runtime = Runtime.load(root)

        async def go() -> float:
            runner = Runner(runtime)
            await runner.start()
            t0 = time.perf_counter()
            while q.count():
                await runner.run_once()
            elapsed = time.perf_counter() - t0
            await runner.pool.prune(everything=True)
            assert runner.stats["sent"] == n, runner.stats
            return elapsed
        try:
            return asyncio.run(go())
        finally:
            runtime.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- Postfix, through the reference stack -----------------------------------------

class PostfixStack:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="qbench-anchor-"))
        self.env = {**os.environ, "SMTP_PORT": str(free_port()), "SUBMISSION_PORT": str(free_port()),
                    "IMAP_PORT": str(free_port()), "POP3_PORT": str(free_port())}
        self.etc = self.root / "postfix" / "etc"
        self.smtp_port = int(self.env["SMTP_PORT"])

    def up(self, sink_port: int) -> None:
        # the daemons inherit stdout/stderr: a pipe would never reach EOF, so use a file
        with open(self.root / "stack-up.log", "wb") as out:
            subprocess.run(["bash", str(SHARED / "stack-up.sh"), str(self.root)], env=self.env, check=True,
                           stdout=out, stderr=out, timeout=120)
        self.postconf(f"relayhost = [127.0.0.1]:{sink_port}", "default_transport = smtp",
                      "relay_transport = smtp", "defer_transports = smtp",
                      "smtp_destination_concurrency_limit = 10", "default_destination_concurrency_limit = 10",
                      "smtp_tls_security_level = none", "smtp_dns_support_level = disabled",
                      "smtpd_relay_restrictions = permit_mynetworks, reject")
        self.reload()

    def postconf(self, *settings: str) -> None:
        subprocess.run(["postconf", "-c", str(self.etc), "-e", *settings], check=True)

    def reload(self) -> None:
        subprocess.run(["postfix", "-c", str(self.etc), "reload"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        time.sleep(1.0)

    def queued(self) -> int:
        out = subprocess.run(["postqueue", "-c", str(self.etc), "-j"], capture_output=True, text=True).stdout
        return sum(1 for line in out.splitlines() if line.strip())

    def load(self, n: int, size: int) -> None:
        subprocess.run(["smtp-source", "-c", "-l", str(size), "-m", str(n), "-s", "10",
                        "-f", "bench@example.com", "-t", "rcpt@bench.example",
                        f"127.0.0.1:{self.smtp_port}"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=600)
        deadline = time.time() + 120
        while self.queued() < n and time.time() < deadline:
            time.sleep(0.2)

    def one_pass(self, n: int, size: int) -> float:
        self.postconf("defer_transports = smtp")
        self.reload()
        self.load(n, size)
        # hold everything, lift the defer, then start the clock at the release
        subprocess.run(["postsuper", "-c", str(self.etc), "-h", "ALL"], check=True, stderr=subprocess.DEVNULL)
        self.postconf("defer_transports =")
        self.reload()
        t0 = time.perf_counter()
        subprocess.run(["postsuper", "-c", str(self.etc), "-H", "ALL"], check=True, stderr=subprocess.DEVNULL)
        subprocess.run(["postqueue", "-c", str(self.etc), "-f"], check=True)
        while self.queued():
            time.sleep(0.05)
        return time.perf_counter() - t0

    def down(self) -> None:
        subprocess.run(["bash", str(SHARED / "stack-down.sh"), str(self.root)], env={**self.env, "PURGE": "1"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--no-postfix", action="store_true")
    args = ap.parse_args()
    port = free_port()
    sink = start_sink(port)
    try:
        ours = [mailctl_pass(port, args.messages, args.size) for _ in range(args.passes)]
        rate = args.messages / statistics.median(ours)
        print(f"mailctl: {args.messages} x {args.size} B, concurrency 10: "
              f"{rate:.0f} msg/s (median of {args.passes}; passes {', '.join(f'{t:.2f}s' for t in ours)})")
        if args.no_postfix or not (SHARED / "stack-up.sh").exists() or os.geteuid() != 0:
            print("postfix: skipped (needs ../shared/bench/stack-up.sh and root)")
            return
        stack = PostfixStack()
        try:
            stack.up(port)
            theirs = [stack.one_pass(args.messages, args.size) for _ in range(args.passes)]
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            print(f"postfix: could not run the reference stack ({e})")
            return
        finally:
            stack.down()
        prate = args.messages / statistics.median(theirs)
        print(f"postfix: {prate:.0f} msg/s (median of {args.passes}; passes "
              f"{', '.join(f'{t:.2f}s' for t in theirs)})")
        print(f"ratio mailctl/postfix: {rate / prate:.2f}")
    finally:
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
