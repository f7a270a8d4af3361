#!/usr/bin/env python3
"""IMAP/POP3 benchmark: our server and Dovecot on the same generated mailboxes.

    python bench/imap.py [--counts 10000,100000] [--dovecot] [--skip-conc] [--json out.json]

Runs ../shared/bench/imap-bench.py (the shared, server-agnostic driver) against
`mailctl serve` on a temporary root, and with --dovecot against the reference stack
(../shared/bench/stack-up.sh), then prints each operation's time and the ratio.
Only when ../shared exists beside the checkout. Speed is measured here, never asserted in tests.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MAILCTL_SHARED", REPO.parent / "shared")) / "bench"
sys.path.insert(0, str(REPO))

USER = "alice@example.test"
PASSWORD = "secret-pass-1"


def make_root(path: Path):
    from engine import directory_edit, passwords, settings as settings_mod, setup
    from engine.root import Root, atomic_write
    root = Root(path)
    setup.init_root(root, hostname="localhost", high_ports=True)
    values = {}
    for name in settings_mod.LISTENERS:
        values[f"listeners.{name}.bind"] = ["127.0.0.1"]
        values[f"listeners.{name}.port"] = 0
        values[f"listeners.{name}.enabled"] = name in ("imap", "pop3")
    values.update({"auth.allow_plaintext": True, "auth.failure_delay_s": 0,
                   "mailbox.max_sessions_per_user": 0, "mailbox.max_sessions": 0})
    atomic_write(root.config_file, settings_mod.render_sample(values))
    cfg = settings_mod.load(root.config_file)
    directory_edit.add_domain(root, cfg, "example.test")
    directory_edit.add_account(root, cfg, USER, passwords.hash_password(PASSWORD))
    return root


def start_ours(root) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "mailctl", "--root", str(root.path), "serve"],
                            env=env, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            data = tomllib.loads((root.run_dir / "ports.toml").read_text())
            if data.get("pid") == proc.pid:
                return proc, {n: a[0]["port"] for n, a in data["ports"].items() if a}
        except (FileNotFoundError, tomllib.TOMLDecodeError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("mailctl serve did not start")


def run_driver(label: str, port: int, pop3_port: int, user: str, maildir: Path, counts: str,
               extra: list[str], pids: str = "") -> dict:
    out = Path(tempfile.mkdtemp()) / f"{label}.json"
    cmd = [sys.executable, str(SHARED / "imap-bench.py"), "127.0.0.1", str(port), user, PASSWORD,
           "--pop3-port", str(pop3_port), "--maildir", str(maildir), "--counts", counts,
           "--rcpt", "alice@example.test", "--json", str(out), *extra]
    if pids:
        cmd += ["--server-pids", pids]
    print(f"== {label}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=False)
    try:
        return json.loads(out.read_text())
    except FileNotFoundError:
        return {}


def by_test(data: dict) -> dict[str, float]:
    """{"N=10000 SELECT INBOX (...)": wall seconds} from the driver's JSON."""
    out = {}
    for r in data.get("results", []):
        if isinstance(r, dict) and "test" in r and isinstance(r.get("wall_s"), (int, float)):
            out[f"N={r.get('n', '?')} {r['test']}"] = float(r["wall_s"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="10000,100000")
    ap.add_argument("--dovecot", action="store_true", help="also run the reference Dovecot (stack-up.sh)")
    ap.add_argument("--json", help="write both result sets and the ratios here")
    ap.add_argument("--dovecot-from", metavar="JSON",
                    help="take Dovecot's figures from an earlier --json output instead of running it")
    ap.add_argument("driver_args", nargs="*", help="extra arguments for imap-bench.py (after --)")
    args = ap.parse_args()
    if not (SHARED / "imap-bench.py").exists():
        print(f"{SHARED}/imap-bench.py not found; nothing to do")
        return 0
    work = Path(tempfile.mkdtemp(prefix="mailctl-imap-bench-"))
    root = make_root(work / "root")
    maildir = root.mail_dir / "example.test" / "alice"
    proc, ports = start_ours(root)
    try:
        ours = run_driver("mailctl", ports["imap"], ports["pop3"], USER, maildir, args.counts,
                          args.driver_args, str(proc.pid))
    finally:
        proc.terminate()
        proc.wait(30)
    theirs = {}
    if args.dovecot_from:
        theirs = json.loads(Path(args.dovecot_from).read_text()).get("dovecot", {})
    elif args.dovecot:
        stack = work / "anchor"
        # Our own ports, so a reference stack someone else runs on the defaults is left alone.
        env = {**os.environ, "SMTP_PORT": "22525", "SUBMISSION_PORT": "22587", "IMAP_PORT": "22143",
               "POP3_PORT": "22110"}
        # Output to a file, not a pipe: the daemons it starts keep a pipe open forever.
        log = work / "stack-up.log"
        with open(log, "w") as f:
            up = subprocess.run(["bash", str(SHARED / "stack-up.sh"), str(stack)], stdout=f, stderr=f,
                                stdin=subprocess.DEVNULL, env=env)
        try:
            if up.returncode != 0:
                print("reference stack did not start:\n" + log.read_text()[-3000:])
            else:
                theirs = run_driver("dovecot", 22143, 22110, "alice", stack / "mail/example.test/alice",
                                    args.counts, args.driver_args)
        finally:  # stop whatever part of the stack did start
            subprocess.run(["bash", str(SHARED / "stack-down.sh"), str(stack)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env={**env, "PURGE": "1"})
    a, b = by_test(ours), by_test(theirs)
    print(f"\n{'operation':72} {'mailctl ms':>11} {'dovecot ms':>11} {'ratio':>7}")
    ratios = {}
    for key, value in a.items():
        other = b.get(key)
        ratio = value / other if other else None
        ratios[key] = ratio
        print(f"{key[:72]:72} {value * 1000:11.1f} {other * 1000 if other else float('nan'):11.1f} "
              f"{'' if ratio is None else f'{ratio:7.2f}'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"mailctl": ours, "dovecot": theirs, "ratios": ratios}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
