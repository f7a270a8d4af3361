"""Resource faults against a real `mailctl serve`: literals announced far beyond any limit,
over-long lines during IDLE, and the process reaching its open-file limit under a
connection flood. Each gets the protocol's answer, and the server goes on serving."""
from __future__ import annotations

import imaplib
import poplib
import resource
import smtplib
import socket
import time

import pytest

from helpers_mail import PASSWORD
from helpers_process import alive, cpu_seconds, open_fds, serving_pid
from helpers_raw import Raw
from helpers_server import make_root, serve_process

USER = "alice@example.com"
NOFILE = 64                   # the serving process's open-file limit in the flood tests
NO_CONNECTION_LIMITS = {"limits.max_connections": 0, "limits.max_connections_per_ip": 0,
                        "mailbox.max_sessions": 0, "mailbox.max_sessions_per_user": 0,
                        "mailbox.max_connections_per_ip": 0, "mailbox.max_userip_connections": 0}
REFUSALS = {"smtp": b"421 4.3.2 ", "imap": b"* BYE [UNAVAILABLE] ", "pop3": b"-ERR [SYS/TEMP] "}
GREETINGS = {"smtp": b"220 ", "imap": b"* OK ", "pop3": b"+OK "}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("limits"), accounts={USER: PASSWORD},
                     settings={"auth.allow_plaintext": True})
    with serve_process(root, args=("--processes", "1")) as proc:
        yield proc


def logged_in(server) -> Raw:
    r = Raw(server.ports["imap"])
    r.login(USER)
    return r


def closed_after(r: Raw) -> bool:
    """True when the server has closed the connection (after what it already sent)."""
    try:
        r.line()
    except (ConnectionError, OSError):
        return True
    return False


def test_huge_synchronising_literal_is_refused_at_once_without_a_continuation(server):
    r = logged_in(server)
    for tag, size in ((b"a1", b"2000000000"), (b"a2", b"9" * 40)):
        r.send(tag + b" SELECT {" + size + b"}\r\n")
        reply = r.line()                   # the answer, not "+ Ready": nothing is awaited
        assert reply.startswith(tag + b" BAD") and b"larger than the limit" in reply, reply
    assert r.cmd(b"APPEND INBOX {2000000000}", b"a3").startswith(b"a3 NO [TOOBIG]")
    assert r.cmd(b"NOOP", b"a4").startswith(b"a4 OK")
    r.close()


@pytest.mark.parametrize("size", [b"2000000000", b"9" * 40])
def test_huge_non_synchronising_literal_is_answered_then_bye(server, size):
    r = logged_in(server)
    # the bytes would follow at once: they are never taken for commands
    r.send(b"b1 SELECT {" + size + b"+}\r\nb2 NOOP\r\n")
    assert r.line().startswith(b"b1 BAD")
    assert r.line().startswith(b"* BYE")
    assert closed_after(r)


def test_overlong_line_during_idle_gets_tagged_bad_and_the_session_goes_on(server):
    r = logged_in(server)
    assert r.cmd(b"SELECT INBOX").startswith(b"t1 OK")
    r.send(b"i1 IDLE\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"x" * 70_000 + b"\r\n")
    reply = r.line()
    assert reply.startswith(b"i1 BAD") and b"too long" in reply, reply
    assert r.cmd(b"NOOP", b"i2").startswith(b"i2 OK")
    r.close()


# -- the open-file limit -------------------------------------------------------------

def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@pytest.fixture
def fd_limited(tmp_path):
    root = make_root(tmp_path, accounts={USER: PASSWORD},
                     settings={"auth.allow_plaintext": True, **NO_CONNECTION_LIMITS})
    with serve_process(root, args=("--processes", "1"), preexec_fn=low_fd_limit) as proc:
        yield proc


def first_line(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n")[0]


def fill_descriptors(proc, flood: list, protocol: str = "imap") -> None:
    """Connect until one connection is refused: then the process has no descriptor free
    (the accepted ones stay open in `flood`)."""
    for _ in range(4 * NOFILE):
        sock = socket.create_connection(("127.0.0.1", proc.ports[protocol]), timeout=10)
        line = first_line(sock)
        if line.startswith(REFUSALS[protocol]):
            sock.close()
            return
        assert line.startswith(GREETINGS[protocol]), line
        flood.append(sock)
    raise AssertionError("no connection was refused")


def wait_for_fds_below(pid: int, count: int) -> None:
    deadline = time.monotonic() + 15
    while open_fds(pid) >= count and time.monotonic() < deadline:
        time.sleep(0.1)


def test_connection_flood_past_the_open_file_limit_is_answered_and_served_after(fd_limited):
    proc = fd_limited
    probe = socket.create_connection(("127.0.0.1", proc.ports["smtp"]), timeout=10)
    pid = serving_pid(probe, proc.proc.pid)
    probe.close()
    flood = []
    for _ in range(40):                        # 120 connections against a limit of 64
        for protocol in ("smtp", "imap", "pop3"):
            flood.append((protocol, socket.create_connection(("127.0.0.1", proc.ports[protocol]), timeout=10)))
    seen = {protocol: {"greeted": 0, "refused": 0} for protocol in REFUSALS}
    for protocol, sock in flood:
        line = first_line(sock)                # every client hears something: no silent wait
        if line.startswith(GREETINGS[protocol]):
            seen[protocol]["greeted"] += 1
        else:
            assert line.startswith(REFUSALS[protocol]) and b"try again later" in line, (protocol, line)
            seen[protocol]["refused"] += 1
    assert all(counts["refused"] for counts in seen.values()), seen
    # the accept loop pauses instead of spinning while the descriptors are used up
    cpu_before = cpu_seconds(pid)
    time.sleep(2)
    assert cpu_seconds(pid) - cpu_before < 1.0
    for _, sock in flood:
        sock.close()
    wait_for_fds_below(pid, NOFILE // 2)
    time.sleep(1.2)                            # asyncio retries a paused listener after a second
    with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("carol@example.org", [USER], b"Subject: after the flood\r\n\r\nhello\r\n")
    imap = imaplib.IMAP4("127.0.0.1", proc.ports["imap"], timeout=10)
    imap.login(USER, PASSWORD)
    assert imap.select("INBOX") == ("OK", [b"1"])
    imap.logout()
    pop = poplib.POP3("127.0.0.1", proc.ports["pop3"], timeout=10)
    pop.user(USER)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 1
    pop.quit()
    assert alive(pid)
    log = (proc.root.log_dir / "mailctl.log").read_text()
    assert "out of file descriptors" in log
    assert "session from" not in log and "internal error" not in log     # no session failed


def test_commands_at_the_open_file_limit_get_temporary_failures(fd_limited):
    proc = fd_limited
    imap = Raw(proc.ports["imap"])
    imap.login(USER)
    pop = Raw(proc.ports["pop3"])
    pop.send(f"USER {USER}\r\n".encode())
    assert pop.line().startswith(b"+OK")
    smtp = Raw(proc.ports["smtp"])
    smtp.send(b"HELO client.example.org\r\nMAIL FROM:<carol@example.org>\r\nRCPT TO:<alice@example.com>\r\n")
    assert [smtp.line()[:3] for _ in range(3)] == [b"250"] * 3
    flood: list[socket.socket] = []
    fill_descriptors(proc, flood)
    smtp.send(b"DATA\r\n")
    assert smtp.line().startswith(b"354")
    smtp.send(b"Subject: at the limit\r\n\r\nhello\r\n.\r\n")
    assert smtp.line()[:3] in (b"451", b"452")
    fill_descriptors(proc, flood)
    reply = imap.cmd(b"APPEND INBOX {7+}\r\nSubject", b"a1")
    assert reply.startswith(b"a1 NO [UNAVAILABLE]"), reply
    fill_descriptors(proc, flood)
    pop.send(f"PASS {PASSWORD}\r\n".encode())
    assert pop.line().startswith(b"-ERR [SYS/TEMP]")
    # over implicit TLS there is nothing to say in plain text: closed at once, not left waiting
    with socket.create_connection(("127.0.0.1", proc.ports["imaps"]), timeout=10) as tls:
        assert tls.recv(100) == b""
    for sock in flood:
        sock.close()
    wait_for_fds_below(serving_pid(imap.sock, proc.proc.pid), NOFILE // 2)
    # the same sessions go on once descriptors are free again
    assert imap.cmd(b"APPEND INBOX {7+}\r\nSubject", b"a2").startswith(b"a2 OK")
    pop.send(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
    assert pop.line().startswith(b"+OK") and pop.line().startswith(b"+OK")
    log = (proc.root.log_dir / "mailctl.log").read_text()
    assert "session from" not in log and "internal error" not in log


def test_append_with_too_many_literals_is_refused_and_leaves_nothing(server):
    """MULTIAPPEND takes many messages, large ones among them, but not without end."""
    r = logged_in(server)
    r.send(b"a1 APPEND INBOX {300000+}\r\n" + b"x" * 300000 + b" {5+}\r\nhello" * 1000 + b"\r\n")
    reply = r.line()
    assert reply.startswith(b"a1 BAD APPEND takes at most 1000 messages"), reply
    assert list((server.root.path / "mail" / "example.com" / "alice" / "tmp").iterdir()) == []
    # the refused messages are gone: an empty APPEND after it stores nothing
    assert r.cmd(b"APPEND INBOX {0+}\r\n", b"a2").startswith(b"a2 NO")
    assert r.cmd(b"NOOP", b"a3").startswith(b"a3 OK")
    r.close()
