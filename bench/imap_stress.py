#!/usr/bin/env python3
"""The IMAP concurrency stress load (tests/imapstress.py) for a longer run, with every
response checked: prints commands/s, mean latency per command, and the errors by kind with
their first examples.

    python bench/imap_stress.py [--seconds 60] [--clients 10] [--mailboxes 20] [--processes 2]
                                [--dovecot] [--no-pop3] [--no-smtp]

Against `mailctl serve` on a temporary root (N serving processes), and with --dovecot also
against the reference Postfix + Dovecot stack (../shared/bench/stack-up.sh, as bench/imap.py
starts it, on ports of its own), the same load back to back. Exit status 1 when our server
had errors.

Measured 2026-12-05 (2 shared cores, 60 s, 10 clients, 20 mailboxes, POP3 + SMTP beside;
main at 6392676, before the issue 13 STORE/\\Recent/EXPUNGE fixes): mailctl 462-591
commands/s with 37-66 errors, all own-keyword / search-own-keyword (a concurrent STORE
loses or resurrects another session's keyword); before i13small/i13mime also 8
expunge-during-fetch (EXPUNGE inside a STORE's answer) and one UID MOVE answered
NO [SERVERBUG]. Dovecot 2.3.19 on the same load: 349-520 commands/s, 0 errors.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

USER, PASSWORD = "stress@example.com", "secret-pass-1"


def run_ours(args) -> int:
    from helpers_server import make_root, serve_process, wait_for_processes
    from imapstress import Target, run_stress, summary
    with tempfile.TemporaryDirectory(prefix="imap-stress-") as tmp:
        root = make_root(tmp, accounts={USER: PASSWORD}, settings={
            "server.processes": args.processes, "auth.allow_plaintext": True, "auth.failure_delay_s": 0,
            "mailbox.max_sessions_per_user": 0, "mailbox.max_userip_connections": 0,
            "mailbox.max_connections_per_ip": 0, "limits.max_connections_per_ip": 0, "queue.offline": True})
        with serve_process(root) as proc:
            wait_for_processes(root, args.processes)
            ports = proc.ports
            target = Target(ports["imap"], USER, PASSWORD, pop3_port=None if args.no_pop3 else ports["pop3"],
                            smtp_port=None if args.no_smtp else ports["smtp"])
            result = run_stress(target, args.clients, args.mailboxes, args.seconds)
        print(f"== mailctl ({args.processes} serving processes)")
        print(summary(result, examples=args.examples))
        print_server_errors(root.log_dir)
    return len(result.errors)


def print_server_errors(log_dir: Path, limit: int = 40) -> None:
    """The server's own error lines (an internal error answered as [SERVERBUG] has its cause there)."""
    lines = []
    for log in sorted(log_dir.glob("*.log")):
        lines += [x for x in log.read_text(errors="replace").splitlines()
                  if "ERROR" in x or "Traceback" in x or "Error" in x]
    if lines:
        print(f"server log, {len(lines)} error lines; the first:")
        print("\n".join("  " + x[:300] for x in lines[:limit]))


def run_dovecot(args) -> None:
    from imap import Reference
    from imapstress import Target, run_stress, summary

    class StressReference(Reference):
        # not bench/imap.py's ports, so both can run at once
        PORTS = {"SMTP_PORT": "32525", "SUBMISSION_PORT": "32587", "IMAP_PORT": "32143", "POP3_PORT": "32110"}

    work = Path(tempfile.mkdtemp(prefix="imap-stress-ref-"))
    ref = StressReference(work)
    try:
        if not ref.up():
            return
        time.sleep(1)
        p = ref.PORTS
        target = Target(int(p["IMAP_PORT"]), "alice@example.test", "secret-pass-1",
                        pop3_port=None if args.no_pop3 else int(p["POP3_PORT"]),
                        smtp_port=None if args.no_smtp else int(p["SMTP_PORT"]))
        result = run_stress(target, args.clients, args.mailboxes, args.seconds)
        print("== Dovecot 2.3 + Postfix (reference stack)")
        print(summary(result, examples=args.examples))
    finally:
        ref.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--mailboxes", type=int, default=20)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--examples", type=int, default=2, help="examples printed per error kind")
    ap.add_argument("--dovecot", action="store_true", help="also run the load against the reference Dovecot")
    ap.add_argument("--no-pop3", action="store_true")
    ap.add_argument("--no-smtp", action="store_true")
    args = ap.parse_args()
    errors = run_ours(args)
    if args.dovecot:
        run_dovecot(args)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
