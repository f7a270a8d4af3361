"""The long network fuzz run: generated SMTP, IMAP and POP3 sessions against a real
`mailctl serve` (two serving processes) on a throwaway root, for as long as asked.

    python bench/fuzz.py --minutes 30 [--seed N] [--processes 2]

Prints the sessions and commands sent, the messages, every finding (tests/netfuzz.py
says what counts), and the serving processes' RSS before and after. Exit 1 on findings.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import netfuzz  # noqa: E402 - after sys.path is set
from engine.maildir import Maildir  # noqa: E402 - after sys.path is set
from helpers_server import make_root, serve_process, wait_for_processes  # noqa: E402 - after sys.path is set


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--processes", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailctl-fuzz-") as tmp:
        accounts = {u: netfuzz.PASSWORD for u in netfuzz.USERS + (netfuzz.POP_USER,)}
        root = make_root(Path(tmp), accounts=accounts, settings=netfuzz.SETTINGS)
        pop = Maildir(root.mail_dir / "example.com" / "fuzzpop")
        with serve_process(root, args=("--processes", str(args.processes))) as srv:
            wait_for_processes(root, args.processes)      # all up and imported: the baseline
            pids = netfuzz.serving_pids(srv.proc.pid)
            before = {pid: netfuzz.rss_mb(pid) for pid in pids}
            fuzzer = netfuzz.Fuzzer(srv.ports, root, seed=args.seed)
            end = time.monotonic() + args.minutes * 60
            while time.monotonic() < end:
                for i in range(20):                       # POP3 sessions delete: keep mail there
                    pop.deliver(f"Subject: pop {i}\r\n\r\nbody {i}\r\n".encode())
                shown = len(fuzzer.stats.findings)
                fuzzer.run(seconds=min(60, end - time.monotonic()))
                archived = fuzzer.archive(root.mail_dir)
                s = fuzzer.stats
                print(f"{time.strftime('%H:%M:%S')} sessions {s.sessions} commands {s.commands} "
                      f"messages {s.messages} findings {len(s.findings)} (archived {archived})", flush=True)
                for f in s.findings[shown:]:
                    print("  new: " + f[:300], flush=True)
            time.sleep(2)
            after = {pid: netfuzz.rss_mb(pid) for pid in netfuzz.serving_pids(srv.proc.pid)}
            fuzzer.check_mail(root.mail_dir)
            fuzzer.check_log(root.log_dir / "mailctl.log")
    s = fuzzer.stats
    print(f"seed {args.seed}, {args.minutes:g} min: sessions {s.sessions}, commands {s.commands}, "
          f"messages {s.messages}")
    print("RSS MB before: " + ", ".join(f"{pid}: {mb:.0f}" for pid, mb in before.items()))
    print("RSS MB after:  " + ", ".join(f"{pid}: {mb:.0f}" for pid, mb in after.items()))
    print(f"findings: {len(s.findings)}")
    for f in s.findings:
        print("  " + f[:2000])
    return 1 if s.findings else 0


if __name__ == "__main__":
    sys.exit(main())
