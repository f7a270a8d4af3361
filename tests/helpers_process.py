"""Looking at a serving process from outside, for resource tests and benches: which
process holds a connection, its resident memory, its CPU time and its open files.

    pid = serving_pid(sock, proc.proc.pid)   # the process that accepted this client socket
    rss_mb(pid); cpu_seconds(pid); open_fds(pid)

Linux only (/proc). A connection is matched to its process through /proc/net/tcp (the
socket's inode) and /proc/PID/fd, so it works whichever process of the server took it.
"""
from __future__ import annotations

import os
import smtplib
import socket
import time


def rss_mb(pid: int) -> float:
    """Resident set size (VmRSS) in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise ProcessLookupError(pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def process_tree(top: int) -> list[int]:
    """top and every descendant of it."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    tree, todo = [], [top]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += [child for child, parent in parents.items() if parent == pid]
    return tree


def _hex_addr(ip: str, port: int) -> str:
    return f"{socket.inet_aton(ip)[::-1].hex().upper()}:{port:04X}"


def serving_pid(sock: socket.socket, top: int) -> int:
    """The process (top or a descendant) holding the server end of a connected client socket."""
    client_ip, client_port = sock.getsockname()[:2]
    server_ip, server_port = sock.getpeername()[:2]
    local, remote = _hex_addr(server_ip, server_port), _hex_addr(client_ip, client_port)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        inode = None
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1] == local and parts[2] == remote:
                    inode = parts[9]
        if inode and inode != "0":
            target = f"socket:[{inode}]"
            for pid in process_tree(top):
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except FileNotFoundError:
                    continue
                for fd in fds:
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                            return pid
                    except FileNotFoundError:
                        continue
        time.sleep(0.05)                  # not accepted yet
    raise LookupError(f"no process under {top} holds the connection from port {client_port}")


class PeakRss:
    """Samples a process's RSS every `interval` s in a thread while the block runs.

        with PeakRss(pid) as peak:
            ...                      # peak.start_mb, then peak.peak_mb when the block ends
    """

    def __init__(self, pid: int, interval: float = 0.01):
        import threading
        self.pid = pid
        self.interval = interval
        self.start_mb = self.peak_mb = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb(self.pid))


def smtp_sessions_in_two_processes(port: int, top: int, source: str = "127.0.0.1") -> dict:
    """One open smtplib session from `source` in each of two serving processes, by pid.

    Both processes accept from one listening socket, and under load the same one may win
    many times running: a session that landed twice is ended at once (kept, it would count
    against server.max_connections_per_ip) and the next try waits a little."""
    found: dict[int, smtplib.SMTP] = {}
    for _ in range(120):
        s = smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=(source, 0))
        pid = serving_pid(s.sock, top)
        if pid in found:
            s.quit()
            time.sleep(0.05)
        else:
            found[pid] = s
        if len(found) == 2:
            return found
    for s in found.values():
        s.close()
    raise AssertionError("the kernel never gave a session to the second serving process")


def data_at_once(sessions, sender: str, recipient: str, messages: list[bytes]) -> list[int]:
    """Each session (from smtp_sessions_in_two_processes) sends its message, the DATA of all
    at the same moment (a barrier); their codes, in order. The sessions are ended."""
    import threading
    barrier = threading.Barrier(len(sessions))
    codes = [0] * len(sessions)

    def send(n, s):
        s.ehlo("client.example")
        s.mail(sender)
        s.rcpt(recipient)
        barrier.wait(10)
        codes[n] = s.data(messages[n])[0]
    threads = [threading.Thread(target=send, args=(n, s)) for n, s in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in sessions:
        s.quit()
    return codes
