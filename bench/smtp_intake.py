#!/usr/bin/env python3
"""SMTP intake benchmark: messages/s accepted AND durably delivered into the Maildir,
for 4 KiB and 100 KiB messages at 1, 10 and 50 concurrent clients.

mailctl answers 250 only once every copy is fsync'd in its Maildir, so a run ends when
the client has its last 250 (and the files are checked). The client is Postfix's
smtp-source when installed (one message per connection, as in the reference figures),
else a small asyncio client. When ../shared/bench/stack-up.sh exists and can start the
reference Postfix, the same matrix runs against it in the same run and the ratio is
printed (Postfix delivers after its 250, so its runs end when all files are visible).
Both servers stay up and their cells alternate; with --rounds the medians are shown
(ratio = median of the per-round ratios).

    python bench/smtp_intake.py [--count 400] [--no-postfix] [--sizes 4096,102400] [--concs 1,10,50]
                                [--processes N] [--rounds R]

With --checks (bench/intake_checks.py) it compares instead two mailctl servers, every
inbound check on (SPF/DKIM/DMARC, HELO checks, DNSBL/RHSBL/URI lists, greylisting
bypassed, spam score; the loopback DNS server) and all off: messages/s, their ratio and
the cost of the checks per message (wall and server CPU):

    python bench/smtp_intake.py --checks --concs 10 --sizes 4096 --rounds 3

With --scanners (bench/intake_scanners.py) it compares four mailctl servers: no scanner,
clamd, clamd + rspamd and clamd + spamd (started here with the tests' configurations):
messages/s, the ratio to no scanner, and the scanners' own share of the cost per message:

    python bench/smtp_intake.py --scanners --concs 10 --sizes 4096 --rounds 3

With --sieve two mailctl servers: one where the recipient has the 50-rule script of
bench/sieve_rules.py active (no rule matches: the message goes through all of them), one
without a script: messages/s and the ratio:

    python bench/smtp_intake.py --sieve --concs 10 --sizes 4096 --rounds 3
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARED_STACK = REPO.parent / "shared" / "bench"
STACK_ROOT = "/tmp/mailctl-bench-stack"
DOMAIN = "example.test"


def make_root(base: Path, extra: dict | None = None):
    from engine import directory_edit, newroot, passwords, settings as settings_mod
    from engine.root import Root, atomic_write
    root = Root(base / "root")
    newroot.init_root(root, hostname="localhost", high_ports=True)
    # no pregreet wait: the Postfix figures compared with are without postscreen
    values = {"queue.offline": True, "limits.max_connections_per_ip": 0, "limits.max_connections": 0,
              "limits.max_message_size_mb": 50, "limits.pregreet_wait_s": 0,
              # serve as whoever runs the bench (its temp root is not the mail user's)
              "server.user": pwd.getpwuid(os.geteuid()).pw_name, **(extra or {})}
    for name in settings_mod.LISTENERS:
        values[f"listeners.{name}.bind"] = ["127.0.0.1"]
        values[f"listeners.{name}.port"] = 0
    atomic_write(root.config_file, settings_mod.render_sample(values))
    cfg = settings_mod.load(root.config_file)
    directory_edit.add_domain(root, cfg, DOMAIN)
    directory_edit.add_account(root, cfg, f"alice@{DOMAIN}", passwords.hash_password("secret-pass-1"))
    return root


def start_server(root, processes: int | None = None) -> tuple[subprocess.Popen, int]:
    """`mailctl serve`; processes None: the server's default (server.processes: one per core)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    extra = [] if processes is None else ["--processes", str(processes)]
    proc = subprocess.Popen([sys.executable, "-m", "mailctl", "--root", str(root.path), "serve", *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(REPO))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            data = tomllib.loads((root.run_dir / "ports.toml").read_text())
            if data.get("pid") == proc.pid:
                return proc, data["ports"]["smtp"][0]["port"]
        except (FileNotFoundError, tomllib.TOMLDecodeError, KeyError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("mailctl serve did not start")


def cpu_seconds(pid: int) -> float:
    """CPU of the server process and its children (secondary serving processes)."""
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def serving_processes(pid: int) -> int:
    try:
        return 1 + len(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return 1


def count_files(maildir: Path) -> int:
    n = 0
    for sub in ("new", "cur"):
        try:
            n += sum(1 for e in os.scandir(maildir / sub) if e.is_file())
        except FileNotFoundError:
            pass
    return n


def empty_maildir(maildir: Path) -> None:
    for sub in ("new", "cur", "tmp"):
        d = maildir / sub
        if d.is_dir():
            for e in os.scandir(d):
                if e.is_file():
                    os.unlink(e.path)


# -- clients -----------------------------------------------------------------------------

def run_smtp_source(port: int, count: int, size: int, conc: int) -> None:
    subprocess.run(["smtp-source", "-s", str(conc), "-m", str(count), "-l", str(size),
                    "-f", f"sender@{DOMAIN}", "-t", f"alice@{DOMAIN}", f"127.0.0.1:{port}"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)


async def _asyncio_client(port: int, count: int, size: int, conc: int) -> None:
    body = b"Subject: bench\r\n\r\n" + (b"x" * 76 + b"\r\n") * (size // 78 + 1)
    left = [count]

    async def reply(reader):
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                return line

    async def worker():
        while left[0] > 0:
            left[0] -= 1
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reply(reader)
            writer.write(b"EHLO bench\r\n")
            await reply(reader)
            writer.write(f"MAIL FROM:<sender@{DOMAIN}>\r\nRCPT TO:<alice@{DOMAIN}>\r\nDATA\r\n".encode())
            for _ in range(3):
                await reply(reader)
            writer.write(body + b".\r\nQUIT\r\n")
            r = await reply(reader)
            assert r.startswith(b"250"), r
            await reply(reader)
            writer.close()

    await asyncio.gather(*[worker() for _ in range(conc)])


def run_client(port: int, count: int, size: int, conc: int) -> None:
    if shutil.which("smtp-source"):
        run_smtp_source(port, count, size, conc)
    else:
        asyncio.run(_asyncio_client(port, count, size, conc))


def measure(port: int, maildir: Path, count: int, size: int, conc: int, server_pid: int | None,
            drain_timeout: float = 120, client=None) -> tuple[float, float]:
    """(messages/s until all visible in the Maildir, server CPU ms per message); client:
    another client (count, size, conc) than run_client."""
    empty_maildir(maildir)
    cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
    t0 = time.monotonic()
    (client or (lambda n, sz, c: run_client(port, n, sz, c)))(count, size, conc)
    deadline = time.monotonic() + drain_timeout
    while count_files(maildir) < count and time.monotonic() < deadline:
        time.sleep(0.002)
    elapsed = time.monotonic() - t0
    got = count_files(maildir)
    if got < count:
        print(f"  warning: only {got} of {count} messages visible", file=sys.stderr)
    cpu = (cpu_seconds(server_pid) - cpu0) * 1000 / count if server_pid else 0.0
    return got / elapsed, cpu


# -- the reference stack ----------------------------------------------------------------------

def postfix_up() -> tuple[int, Path] | None:
    script = SHARED_STACK / "stack-up.sh"
    if not script.exists() or os.geteuid() != 0:
        return None
    # not a pipe: the daemons it starts would keep it open and we would wait forever
    with tempfile.TemporaryFile("w+") as log:
        out = subprocess.run(["bash", str(script), STACK_ROOT], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, timeout=300)
        if out.returncode != 0:
            log.seek(0)
            print(f"reference stack did not start: {log.read().strip()[-300:]}", file=sys.stderr)
            return None
    return int(os.environ.get("SMTP_PORT", "12525")), Path(STACK_ROOT) / "mail" / DOMAIN / "alice"


def postfix_down() -> None:
    script = SHARED_STACK / "stack-down.sh"
    subprocess.run(["bash", str(script), STACK_ROOT], env={**os.environ, "PURGE": "1"},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=120)


def postfix_pids(port: int) -> list[int]:
    """The Postfix master for CPU accounting is not a single process; skip CPU for it."""
    return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=400, help="messages per 4 KiB cell (100 KiB: half)")
    ap.add_argument("--sizes", default="4096,102400")
    ap.add_argument("--concs", default="1,10,50")
    ap.add_argument("--no-postfix", action="store_true", help="do not start the reference stack")
    ap.add_argument("--processes", type=int, default=None,
                    help="mailctl serving processes (serve --processes); default: the server's own default, "
                         "one per CPU core")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every cell this many times, mailctl and Postfix alternating; medians are shown "
                         "(the machine is shared: one round is noisy)")
    ap.add_argument("--checks", action="store_true",
                    help="every inbound check on against all off (bench/intake_checks.py), no Postfix")
    ap.add_argument("--sieve", action="store_true", help="a 50-rule Sieve script on against none, no Postfix")
    ap.add_argument("--scanners", action="store_true",
                    help="clamd and a spam scanner on against none (bench/intake_scanners.py), no Postfix")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    concs = [int(c) for c in args.concs.split(",")]
    if args.checks:
        run_checks(args, sizes, concs)
        return
    if args.scanners:
        run_scanners(args, sizes, concs)
        return
    if args.sieve:
        run_sieve(args, sizes, concs)
        return
    client = "smtp-source" if shutil.which("smtp-source") else "asyncio client"

    runs: dict[tuple, dict[str, list[float]]] = {}
    stack = None
    with tempfile.TemporaryDirectory(prefix="mailctl-bench-") as tmp:
        root = make_root(Path(tmp))
        proc, port = start_server(root, args.processes)
        time.sleep(1.0)                      # secondaries bind the listeners
        serving = serving_processes(proc.pid)
        maildir = root.mail_dir / DOMAIN / "alice"
        try:
            # Both servers stay up (idle one costs nothing) so their cells can alternate.
            stack = None if args.no_postfix else postfix_up()
            measure(port, maildir, 50, 4096, 10, proc.pid)          # warm-up
            if stack:
                measure(stack[0], stack[1], 50, 4096, 10, None)
            for rnd in range(args.rounds):
                for size in sizes:
                    for conc in concs:
                        count = args.count if size <= 8192 else max(args.count // 2, 50)
                        cell = runs.setdefault((size, conc), {"mailctl": [], "cpu": [], "postfix": []})
                        rate, cpu = measure(port, maildir, count, size, conc, proc.pid)
                        cell["mailctl"].append(rate)
                        cell["cpu"].append(cpu)
                        line = (f"round {rnd + 1}  {size // 1024:>4} KiB {conc:>3} clients: mailctl {rate:7.1f} "
                                f"msg/s (CPU {cpu:5.2f} ms/msg)")
                        if stack:
                            pf_rate, _ = measure(stack[0], stack[1], count, size, conc, None)
                            cell["postfix"].append(pf_rate)
                            line += f"  postfix {pf_rate:7.1f} msg/s"
                        print(line, flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
            if stack:
                postfix_down()

    print(f"\nSMTP intake, accepted and durably in the Maildir (client: {client}; one message per connection; "
          f"mailctl serve --processes {args.processes if args.processes is not None else 'default'} "
          f"({serving} serving); median of {args.rounds} round(s))")
    head = f"{'size':>8} {'clients':>8} {'mailctl msg/s':>14} {'CPU ms/msg':>11}"
    if stack:
        head += f" {'postfix msg/s':>14} {'ratio':>6}"
    print(head)
    for (size, conc), r in runs.items():
        rate = statistics.median(r["mailctl"])
        line = f"{size // 1024:>5} KiB {conc:>8} {rate:>14.1f} {statistics.median(r['cpu']):>11.2f}"
        if r["postfix"]:
            ratios = [m / p for m, p in zip(r["mailctl"], r["postfix"])]
            line += f" {statistics.median(r['postfix']):>14.1f} {statistics.median(ratios):>6.2f}"
        print(line)


def off_on_rounds(args, sizes: list[int], concs: list[int], cell, what: str, runs: dict) -> None:
    """Two servers' cells (cell(mode, count, size, conc) -> (msg/s, CPU ms a message))
    alternating, round after round, into runs[(size, conc)]: off, on, cpu_off, cpu_on."""
    for rnd in range(args.rounds):
        for size in sizes:
            for conc in concs:
                count = args.count if size <= 8192 else max(args.count // 2, 50)
                r = runs.setdefault((size, conc), {"off": [], "on": [], "cpu_off": [], "cpu_on": []})
                for mode in ("off", "on"):
                    rate, cpu = cell(mode, count, size, conc)
                    r[mode].append(rate)
                    r[f"cpu_{mode}"].append(cpu)
                print(f"round {rnd + 1}  {size // 1024:>4} KiB {conc:>3} clients: {what} off "
                      f"{r['off'][-1]:7.1f} msg/s, on {r['on'][-1]:7.1f} msg/s", flush=True)


def run_checks(args, sizes: list[int], concs: list[int]) -> None:
    """Checks on against checks off, two servers up at once, their cells alternating."""
    import intake_checks as ic
    pem, public = ic._key_pair()
    dns = ic.DNSProcess(ic.zone(public))
    to = f"alice@{DOMAIN}"
    runs: dict[tuple, dict[str, list[float]]] = {}
    procs = []
    try:
        with tempfile.TemporaryDirectory(prefix="mailctl-bench-") as tmp:
            servers = {}
            for mode in ("off", "on"):
                root = make_root(Path(tmp) / mode, ic.checks_settings(dns.address, mode == "on"))
                proc, port = start_server(root, args.processes)
                procs.append(proc)
                servers[mode] = (root, proc, port, root.mail_dir / DOMAIN / "alice")
            time.sleep(1.0)

            def cell(mode, count, size, conc):
                root, proc, port, maildir = servers[mode]
                data = ic.signed_message(size, pem, to)
                return measure(port, maildir, count, size, conc, proc.pid,
                               client=lambda n, _sz, c: asyncio.run(ic.send_all(port, n, c, data, to)))
            for mode in ("off", "on"):
                cell(mode, 50, 4096, 10)                # warm-up: code paths, block-list cache
            sample = next(iter(os.scandir(servers["on"][3] / "new"))).path
            with open(sample, "rb") as f:
                head = f.read().split(b"\r\n\r\n", 1)[0].decode(errors="replace")
            off_on_rounds(args, sizes, concs, cell, "checks", runs)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        dns.close()
    print("\nA message with the checks on, as delivered (its result fields, unfolded):")
    unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ").replace("\n ", " ").replace("\n\t", " ")
    print("\n".join("  " + " ".join(x.split())[:300] for x in unfolded.splitlines()
                    if x.lower().startswith(("authentication-results", "x-spam"))))
    print(f"\nSMTP intake, checks off and on (asyncio client, one message per connection, DKIM-signed; "
          f"median of {args.rounds} round(s); cost = 1000/on - 1000/off ms of wall time per message)")
    print(f"{'size':>8} {'clients':>8} {'off msg/s':>10} {'on msg/s':>10} {'ratio':>6} {'cost ms':>8} "
          f"{'CPU off':>8} {'CPU on':>8}")
    for (size, conc), r in runs.items():
        off, on = statistics.median(r["off"]), statistics.median(r["on"])
        ratio = statistics.median([a / b for a, b in zip(r["on"], r["off"])])
        print(f"{size // 1024:>5} KiB {conc:>8} {off:>10.1f} {on:>10.1f} {ratio:>6.2f} {1000 / on - 1000 / off:>8.2f} "
              f"{statistics.median(r['cpu_off']):>8.2f} {statistics.median(r['cpu_on']):>8.2f}")


def run_scanners(args, sizes: list[int], concs: list[int]) -> None:
    """No scanner, clamd, clamd + rspamd, clamd + spamd: four servers up at once, cells alternating."""
    import intake_scanners as isc
    to = f"alice@{DOMAIN}"
    runs: dict[tuple, dict[str, list[float]]] = {}
    procs = []
    with tempfile.TemporaryDirectory(prefix="mailctl-bench-") as tmp, isc.scanners(Path(tmp)) as (clamd, rspamd, spamd):
        pids = {"clamd": clamd.proc.pid, "rspamd": rspamd.proc.pid, "spamd": spamd.proc.pid}
        try:
            servers = {}
            for mode in isc.MODES:
                root = make_root(Path(tmp) / mode.replace("+", "-"), isc.settings_for(mode, clamd, rspamd, spamd))
                proc, port = start_server(root, args.processes)
                procs.append(proc)
                servers[mode] = (proc, port, root.mail_dir / DOMAIN / "alice")
            time.sleep(1.0)

            def cell(mode, count, size, conc):
                import intake_checks as ic
                proc, port, maildir = servers[mode]
                data = isc.message(size)
                used = [name for name in pids if name in mode.split("+")]
                before = sum(isc.tree_cpu(pids[n]) for n in used)
                rate, cpu = measure(port, maildir, count, size, conc, proc.pid,
                                    client=lambda n, _sz, c: asyncio.run(ic.send_all(port, n, c, data, to)))
                return rate, cpu, (sum(isc.tree_cpu(pids[n]) for n in used) - before) * 1000 / count
            for mode in isc.MODES:
                cell(mode, 30, 4096, 10)                # warm-up: code paths, the scanners' first messages
            for rnd in range(args.rounds):
                for size in sizes:
                    for conc in concs:
                        count = args.count if size <= 8192 else max(args.count // 2, 50)
                        r = runs.setdefault((size, conc), {})
                        for mode in isc.MODES:
                            rate, cpu, scan_cpu = cell(mode, count, size, conc)
                            for key, value in ((mode, rate), (f"cpu {mode}", cpu), (f"scan {mode}", scan_cpu)):
                                r.setdefault(key, []).append(value)
                        print(f"round {rnd + 1}  {size // 1024:>4} KiB {conc:>3} clients: "
                              + ", ".join(f"{m} {r[m][-1]:.1f}" for m in isc.MODES) + " msg/s", flush=True)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    print(f"\nSMTP intake through the scanners (asyncio client, one message per connection, clean text "
          f"message; median of {args.rounds} round(s); cost = 1000/mode - 1000/none ms of wall time per "
          f"message; CPU ms per message of mailctl and of the scanners; share = scanners' CPU / (theirs + "
          f"mailctl's))")
    print(f"{'size':>8} {'clients':>8} {'mode':>13} {'msg/s':>8} {'ratio':>6} {'cost ms':>8} {'mailctl CPU':>12} "
          f"{'scanner CPU':>12} {'share':>6}")
    for (size, conc), r in runs.items():
        none = statistics.median(r["none"])
        for mode in isc.MODES:
            rate = statistics.median(r[mode])
            ratio = statistics.median([a / b for a, b in zip(r[mode], r["none"])])
            cpu, scan = statistics.median(r[f"cpu {mode}"]), statistics.median(r[f"scan {mode}"])
            print(f"{size // 1024:>5} KiB {conc:>8} {mode:>13} {rate:>8.1f} {ratio:>6.2f} "
                  f"{1000 / rate - 1000 / none:>8.2f} {cpu:>12.2f} {scan:>12.2f} {scan / (scan + cpu):>6.0%}")


def run_sieve(args, sizes: list[int], concs: list[int]) -> None:
    """Sieve on (a 50-rule script) against off, two servers up at once, cells alternating."""
    from engine.maildir import Maildir
    from engine.sieve import scripts
    from sieve_rules import script_text
    runs: dict[tuple, dict[str, list[float]]] = {}
    procs = []
    with tempfile.TemporaryDirectory(prefix="mailctl-bench-") as tmp:
        try:
            servers = {}
            for mode in ("off", "on"):
                root = make_root(Path(tmp) / mode)
                home = Maildir.for_account(root, DOMAIN, "alice")
                if not home.exists():
                    home.create()
                if mode == "on":
                    scripts.put_script(home.path, "rules", script_text(50))
                    scripts.activate(home.path, "rules")
                proc, port = start_server(root, args.processes)
                procs.append(proc)
                servers[mode] = (proc, port, root.mail_dir / DOMAIN / "alice")
            time.sleep(1.0)
            for mode in ("off", "on"):
                measure(servers[mode][1], servers[mode][2], 50, 4096, 10, servers[mode][0].pid)   # warm-up
            off_on_rounds(args, sizes, concs, lambda mode, count, size, conc: measure(
                servers[mode][1], servers[mode][2], count, size, conc, servers[mode][0].pid), "sieve", runs)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    print(f"\nSMTP intake, Sieve off and on (a 50-rule script, no rule matching; median of {args.rounds} round(s))")
    print(f"{'size':>8} {'clients':>8} {'off msg/s':>10} {'on msg/s':>10} {'ratio':>6} {'CPU off':>8} {'CPU on':>8}")
    for (size, conc), r in runs.items():
        off, on = statistics.median(r["off"]), statistics.median(r["on"])
        ratio = statistics.median([a / b for a, b in zip(r["on"], r["off"])])
        print(f"{size // 1024:>5} KiB {conc:>8} {off:>10.1f} {on:>10.1f} {ratio:>6.2f} "
              f"{statistics.median(r['cpu_off']):>8.2f} {statistics.median(r['cpu_on']):>8.2f}")


if __name__ == "__main__":
    main()
