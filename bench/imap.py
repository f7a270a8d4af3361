#!/usr/bin/env python3
"""IMAP/POP3 benchmark: our server and Dovecot on the same generated mailboxes.

    python bench/imap.py [--counts 10000,100000] [--dovecot] [--processes N] [--json out.json]
                         [--password-scheme sha512-crypt|argon2id] [-- --skip-conc ...]

Runs ../shared/bench/imap-bench.py (the shared, server-agnostic driver) against
`mailctl serve` on a temporary root, and with --dovecot against the reference stack
(../shared/bench/stack-up.sh, run as root), each count on both servers back to back, then
prints each operation's wall time and server CPU time beside Dovecot's, and the ratios.
Arguments after `--` go to the driver (e.g. --skip-conc, --skip-pop3, --quiet-pct 0).
Our account's password is stored as SHA512-CRYPT by default, as the reference stack's
Dovecot stores it, so a cold LOGIN costs both the same hash; the cost of argon2id (what
`mailctl account add` writes) is printed beside it. Only when ../shared exists beside the checkout. Speed is measured here, never asserted in tests.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
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


def password_hash(scheme: str) -> str:
    """The account's stored password. sha512-crypt is what the reference stack's Dovecot
    verifies (stack-up.sh's default PASS_SCHEME), so a cold LOGIN costs both servers the
    same hash; argon2id is what `mailctl account add` writes."""
    from engine import passwords
    if scheme == "argon2id":
        return passwords.hash_password(PASSWORD)
    made = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True, check=True)
    return "{SHA512-CRYPT}" + made.stdout.strip()


def verify_cost_ms(stored: str) -> float:
    from engine import passwords
    started = time.perf_counter()
    assert passwords.verify(stored, PASSWORD)
    return (time.perf_counter() - started) * 1000


def make_root(path: Path, scheme: str = "sha512-crypt"):
    from engine import directory_edit, newroot, settings as settings_mod
    from engine.root import Root, atomic_write
    root = Root(path)
    newroot.init_root(root, hostname="localhost", high_ports=True)
    values = {}
    for name in settings_mod.LISTENERS:
        values[f"listeners.{name}.bind"] = ["127.0.0.1"]
        values[f"listeners.{name}.port"] = 0
        values[f"listeners.{name}.enabled"] = name in ("imap", "pop3")
    values.update({"auth.allow_plaintext": True, "auth.failure_delay_s": 0,
                   "mailbox.max_sessions_per_user": 0, "mailbox.max_sessions": 0,
                   "mailbox.max_connections_per_ip": 0, "mailbox.max_userip_connections": 0,
                   # serve as whoever runs the bench (its temp root is not the mail user's)
                   "server.user": pwd.getpwuid(os.geteuid()).pw_name})
    atomic_write(root.config_file, settings_mod.render_sample(values))
    cfg = settings_mod.load(root.config_file)
    directory_edit.add_domain(root, cfg, "example.test")
    directory_edit.add_account(root, cfg, USER, password_hash(scheme))
    return root


def start_ours(root, processes: int | None = None) -> tuple[subprocess.Popen, dict]:
    """`mailctl serve`; processes None: the server's default (one per core)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    extra = [] if processes is None else ["--processes", str(processes)]
    proc = subprocess.Popen([sys.executable, "-m", "mailctl", "--root", str(root.path), "serve", *extra],
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
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def _read_tagged(sock, tag: bytes) -> list[bytes]:
    buf, lines = b"", []
    while True:
        while b"\r\n" not in buf:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        line, buf = buf.split(b"\r\n", 1)
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines


def qresync_after_changes(port: int, user: str, changes: int = 1000) -> dict:
    """SELECT ... (QRESYNC (uidvalidity modseq 1:*)) after another client changed the
    flags of `changes` messages (UID STORE) and expunged a tenth as many:
    the resync of a client that was offline. Seconds for the SELECT, and what it sent."""
    import re
    import socket

    def session():
        sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        _read_tagged(sock, b"*")
        for tag, cmd in ((b"a", f'LOGIN {user} "{PASSWORD}"'), (b"b", "ENABLE QRESYNC")):
            sock.sendall(tag + b" " + cmd.encode() + b"\r\n")
            _read_tagged(sock, tag)
        return sock
    first = session()
    first.sendall(b"c SELECT INBOX\r\n")
    lines = b"\n".join(_read_tagged(first, b"c"))
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", lines)[1])
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", lines)[1])
    exists = int(re.search(rb"\* (\d+) EXISTS", lines)[1])
    uidnext = int(re.search(rb"UIDNEXT (\d+)", lines)[1])
    known = f"1:{uidnext - 1}"      # Dovecot takes no "*" in known-uids
    first.sendall(b"d LOGOUT\r\n")
    first.close()
    other = session()
    other.sendall(b"c SELECT INBOX\r\n")     # one command at a time: _read_tagged keeps no rest
    _read_tagged(other, b"c")
    other.sendall(b"d UID FETCH 1:* (UID)\r\n")
    uids = [int(u) for u in re.findall(rb"UID (\d+)", b"\n".join(_read_tagged(other, b"d")))]
    step = max(1, len(uids) // changes)
    changed = uids[::step][:changes]
    gone = changed[: max(1, changes // 10)]
    for i in range(0, len(changed), 500):
        part = ",".join(map(str, changed[i:i + 500]))
        other.sendall(f"e UID STORE {part} +FLAGS.SILENT (\\Flagged)\r\n".encode())
        _read_tagged(other, b"e")
    other.sendall(f"f UID STORE {','.join(map(str, gone))} +FLAGS.SILENT (\\Deleted)\r\n".encode())
    _read_tagged(other, b"f")
    other.sendall(b"g EXPUNGE\r\n")
    _read_tagged(other, b"g")
    other.sendall(b"h LOGOUT\r\n")
    other.close()
    resync = session()
    started = time.perf_counter()
    resync.sendall(f"c SELECT INBOX (QRESYNC ({uidvalidity} {modseq} {known}))\r\n".encode())
    lines = _read_tagged(resync, b"c")
    took = time.perf_counter() - started
    resync.close()
    fetches = sum(1 for line in lines if b" FETCH " in line)
    vanished = sum(1 for line in lines if line.startswith(b"* VANISHED"))
    print(f"   QRESYNC SELECT of {exists} messages after {len(changed)} changes, {len(gone)} expunges: "
          f"{took * 1000:.1f} ms, {fetches} FETCH, {vanished} VANISHED line(s)", flush=True)
    return {"messages": exists, "changes": len(changed), "expunged": len(gone), "select_s": took,
            "fetch_lines": fetches}
SORT_THREAD = [("SORT (DATE)", "SORT (DATE) UTF-8 ALL"), ("SORT (SUBJECT)", "SORT (SUBJECT) UTF-8 ALL"),
               ("UID SORT (REVERSE ARRIVAL)", "UID SORT (REVERSE ARRIVAL) UTF-8 ALL"),
               ("THREAD REFERENCES", "THREAD REFERENCES UTF-8 ALL")]


def sort_and_thread(port: int, user: str, n: str, runs: int = 3) -> dict:
    """SORT and THREAD on the INBOX the driver just filled (RFC 5256): the first run of
    each (keys read from the messages or the index) and the median of the next runs."""
    import imaplib
    import statistics
    results = []
    c = imaplib.IMAP4("127.0.0.1", port, timeout=900)
    try:
        c.login(user, PASSWORD)
        c.select("INBOX", readonly=True)
        for label, command in SORT_THREAD:
            times = []
            for _ in range(1 + runs):
                started = time.perf_counter()
                typ, data = c._simple_command(*command.split(" ", 1)) if not command.startswith("UID") \
                    else c.uid(*command.split(" ", 2)[1:])
                times.append(time.perf_counter() - started)
                c.untagged_responses.clear()
                if typ != "OK":
                    print(f"{label}: {typ} {data}")
                    break
            results.append({"n": n, "test": f"{label} first", "wall_s": times[0]})
            if len(times) > 1:
                results.append({"n": n, "test": f"{label} again", "wall_s": statistics.median(times[1:])})
        c.logout()
    except (OSError, imaplib.IMAP4.error) as e:
        print(f"sort/thread timings stopped: {e}")
    return {"results": results}


def sort_and_thread_on_dovecot(root, n: str) -> dict:
    """sort_and_thread against Dovecot serving our tree (the same message files), for a
    machine where the reference stack is busy or absent."""
    sys.path.insert(0, str(REPO / "tests"))
    import dovecot
    if not dovecot.available():
        return {}
    with dovecot.dovecot_server(root.path, {USER: PASSWORD}) as dc:
        return sort_and_thread(dc.imap_port, USER, n)


def by_test(data: dict) -> dict[str, tuple[float, float | None]]:
    """{"N=10000 SELECT INBOX (...)": (wall seconds, server CPU seconds or None)}."""
    out = {}
    for r in data.get("results", []):
        if isinstance(r, dict) and "test" in r and isinstance(r.get("wall_s"), (int, float)):
            cpu = r.get("server_cpu_s")
            cpu = float(cpu) if isinstance(cpu, (int, float)) and cpu == cpu else None
            out[f"N={r.get('n', '?')} {r['test']}"] = (float(r["wall_s"]), cpu)
    return out


def merge(a: dict, b: dict) -> dict:
    """The driver's JSON of several runs (one per count) as one."""
    return {"results": a.get("results", []) + b.get("results", [])}


class Reference:
    """The Postfix + Dovecot stack of stack-up.sh, on ports of our own, so a reference
    stack someone else runs on the defaults is left alone."""
    PORTS = {"SMTP_PORT": "22525", "SUBMISSION_PORT": "22587", "IMAP_PORT": "22143", "POP3_PORT": "22110"}

    def __init__(self, work: Path):
        # Postfix and Dovecot run as their own users: every directory above the stack's
        # root must be searchable by them (mkdtemp makes it 0700).
        work.chmod(0o755)
        self.root = work / "anchor"
        self.log = work / "stack-up.log"
        self.env = {**os.environ, **self.PORTS}
        self.maildir = self.root / "mail/example.test/alice"

    def up(self) -> bool:
        # Output to a file, not a pipe: the daemons it starts keep a pipe open forever.
        with open(self.log, "w") as f:
            done = subprocess.run(["bash", str(SHARED / "stack-up.sh"), str(self.root)], stdout=f,
                                  stderr=f, stdin=subprocess.DEVNULL, env=self.env)
        if done.returncode != 0:
            print("reference stack did not start:\n" + self.log.read_text()[-3000:])
        return done.returncode == 0

    def down(self) -> None:
        """Stop whatever part of the stack did start, and delete its files."""
        subprocess.run(["bash", str(SHARED / "stack-down.sh"), str(self.root)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env={**self.env, "PURGE": "1"})


def print_table(ours: dict, theirs: dict) -> dict:
    a, b = by_test(ours), by_test(theirs)
    print(f"\n{'operation':64} {'ours ms':>9} {'dovecot':>9} {'ratio':>6} "
          f"{'ours cpu':>9} {'dc cpu':>8} {'cpu x':>6}")
    ratios = {}
    nan = float("nan")
    for key, (wall, cpu) in a.items():
        o_wall, o_cpu = b.get(key, (None, None))
        ratio = wall / o_wall if o_wall else None
        cpu_ratio = cpu / o_cpu if cpu is not None and o_cpu else None
        ratios[key] = {"wall": ratio, "cpu": cpu_ratio}
        print(f"{key[:64]:64} {wall * 1000:9.1f} {o_wall * 1000 if o_wall else nan:9.1f} "
              f"{'' if ratio is None else f'{ratio:6.2f}':>6} "
              f"{cpu * 1000 if cpu is not None else nan:9.0f} {o_cpu * 1000 if o_cpu is not None else nan:8.0f} "
              f"{'' if cpu_ratio is None else f'{cpu_ratio:6.2f}':>6}")
    return ratios


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="10000,100000")
    ap.add_argument("--dovecot", action="store_true", help="also run the reference Dovecot (stack-up.sh)")
    ap.add_argument("--json", help="write both result sets and the ratios here")
    ap.add_argument("--processes", type=int, default=None,
                    help="mailctl serving processes (serve --processes); default: the server's own")
    ap.add_argument("--dovecot-from", metavar="JSON",
                    help="take Dovecot's figures from an earlier --json output instead of running it")
    ap.add_argument("--password-scheme", choices=("sha512-crypt", "argon2id"), default="sha512-crypt",
                    help="how our account's password is stored (default: as the reference stack's)")
    ap.add_argument("--sort-dovecot", action="store_true",
                    help="also time SORT/THREAD on Dovecot started (tests/dovecot.py) on our very tree")
    ap.add_argument("driver_args", nargs="*", help="extra arguments for imap-bench.py (after --)")
    args = ap.parse_args()
    if not (SHARED / "imap-bench.py").exists():
        print(f"{SHARED}/imap-bench.py not found; nothing to do")
        return 0
    work = Path(tempfile.mkdtemp(prefix="mailctl-imap-bench-"))
    root = make_root(work / "root", args.password_scheme)
    print(f"password hash: {args.password_scheme} (one verify {verify_cost_ms(password_hash(args.password_scheme)):.1f} ms); "
          f"argon2id, our default for new accounts, {verify_cost_ms(password_hash('argon2id')):.1f} ms", flush=True)
    maildir = root.mail_dir / "example.test" / "alice"
    ours, theirs = {}, {}
    qresync_runs: list[dict] = []      # SELECT (QRESYNC) after 1,000 changes, per count
    if args.dovecot_from:
        theirs = json.loads(Path(args.dovecot_from).read_text()).get("dovecot", {})
    reference = Reference(work) if args.dovecot and not args.dovecot_from else None
    proc, ports = start_ours(root, args.processes)
    try:
        if reference is not None and not reference.up():
            reference = None
        # One count at a time, both servers back to back: the machine is shared, and
        # ratios are only meaningful between runs made under the same load.
        for count in args.counts.split(","):
            ours = merge(ours, run_driver("mailctl", ports["imap"], ports["pop3"], USER, maildir, count,
                                          args.driver_args, str(proc.pid)))
            qresync = {"mailctl": qresync_after_changes(ports["imap"], USER)}
            ours = merge(ours, sort_and_thread(ports["imap"], USER, count))
            if args.sort_dovecot:
                theirs = merge(theirs, sort_and_thread_on_dovecot(root, count))
            if reference is not None:
                theirs = merge(theirs, run_driver("dovecot", int(Reference.PORTS["IMAP_PORT"]),
                                                  int(Reference.PORTS["POP3_PORT"]), "alice",
                                                  reference.maildir, count, args.driver_args))
                qresync["dovecot"] = qresync_after_changes(int(Reference.PORTS["IMAP_PORT"]), "alice")
                theirs = merge(theirs, sort_and_thread(int(Reference.PORTS["IMAP_PORT"]), "alice", count))
            qresync_runs.append(qresync)
    finally:
        proc.terminate()
        proc.wait(30)
        if reference is not None:
            reference.down()
    ratios = print_table(ours, theirs)
    if args.json:
        Path(args.json).write_text(json.dumps({"mailctl": ours, "dovecot": theirs, "ratios": ratios,
                                                 "qresync": qresync_runs}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
