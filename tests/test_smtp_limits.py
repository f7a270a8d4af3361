"""SMTP limits on a real server: timeouts, connections, invalid commands, line length,
message rate, failed-login ban (with `mailctl ban`), and a 50 MB message that must not
stall other sessions."""
from __future__ import annotations

import smtplib
import socket
import threading
import time

import pytest

from helpers_server import mailctl, make_root, running_server, tls_context

PW = "alice-password-1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("limits"), accounts={"alice@example.com": PW},
                     settings={"queue.offline": True, "limits.command_timeout_s": 2,
                               "limits.max_connections": 4, "limits.max_invalid_commands": 5,
                               "limits.messages_per_ip_per_minute": 12, "limits.max_message_size_mb": 60, "limits.data_timeout_s": 3,
                               "auth.ban_after_failures": 3, "auth.failure_delay_s": 0.2})
    with running_server(root) as server:
        yield server


def connect(srv, name="smtp"):
    raw = socket.create_connection(("127.0.0.1", srv.ports[name]), timeout=10)
    f = raw.makefile("rb")
    return raw, f


def test_slow_client_dropped_by_timeout(srv):
    raw, f = connect(srv)
    assert f.readline().startswith(b"220")
    start = time.monotonic()
    reply = b""
    try:
        for ch in b"EHLO slow.example.com\r\n":
            raw.sendall(bytes([ch]))
            time.sleep(1.0)
            raw.setblocking(False)
            try:
                reply = raw.recv(1000)
            except BlockingIOError:
                reply = b""
            finally:
                raw.setblocking(True)
            if reply:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert reply.startswith(b"421 4.4.2"), reply
    assert time.monotonic() - start < 6
    raw.close()


def test_total_data_time_limited(srv):
    raw, f = connect(srv)
    f.readline()
    raw.sendall(b"HELO x.test\r\nMAIL FROM:<x@foreign.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
    for _ in range(4):
        f.readline()
    start = time.monotonic()
    reply = b""
    try:
        while time.monotonic() - start < 8 and not reply:
            raw.sendall(b"a line that keeps the command timer busy\r\n")   # every 0.5 s: never idle 2 s
            time.sleep(0.5)
            raw.setblocking(False)
            try:
                reply = raw.recv(1000)
            except BlockingIOError:
                pass
            finally:
                raw.setblocking(True)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert reply.startswith(b"421 4.4.2"), reply
    assert 2.5 < time.monotonic() - start < 6
    raw.close()


def test_too_many_connections_421_while_serving_others(srv):
    time.sleep(0.2)
    held = []
    for _ in range(4):
        s = smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10)
        held.append(s)
    raw, f = connect(srv)
    assert f.readline().startswith(b"421 4.7.0")
    raw.close()
    assert held[0].noop()[0] == 250           # the others are still served
    assert held[-1].sendmail("x@foreign.org", ["alice@example.com"], b"Subject: ok\r\n\r\nok\r\n") == {}
    for s in held:
        s.quit()


def test_invalid_commands_and_long_lines(srv):
    time.sleep(0.2)
    raw, f = connect(srv)
    f.readline()
    raw.sendall(b"EHLO x.test\r\n" + b"MAIL FROM:<" + b"a" * 2000 + b"@example.com>\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    assert f.readline().startswith(b"500 5.5.2 Line Too Long")
    for _i in range(5):
        raw.sendall(b"BOGUS\r\n")
    replies = [f.readline() for _ in range(5)]
    assert replies[-1].startswith(b"421 4.7.0"), replies
    assert f.readline() == b""                # disconnected
    raw.close()


def test_messages_per_ip_per_minute(srv):
    time.sleep(0.2)
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
        s.ehlo("client.test")
        codes = []
        for _ in range(13):
            codes.append(s.docmd("MAIL", "FROM:<x@foreign.org>")[0])
            s.rset()
        assert 450 in codes
    srv.runtime.sessions.shared.clear_rates()


def test_large_message_does_not_stall_other_sessions(srv):
    time.sleep(0.2)
    size = 50 * 1024 * 1024
    line = b"x" * 998 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (size // len(line))
    lags: list[float] = []
    done = threading.Event()

    def prober():
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as p:
            while not done.is_set():
                t = time.monotonic()
                p.noop()
                lags.append(time.monotonic() - t)
                time.sleep(0.02)

    th = threading.Thread(target=prober)
    th.start()
    try:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=60) as s:
            t = time.monotonic()
            assert s.sendmail("x@foreign.org", ["alice@example.com"], body) == {}
            elapsed = time.monotonic() - t
    finally:
        done.set()
        th.join()
    print(f"50 MB message: {elapsed:.2f}s, other session NOOP max {max(lags) * 1000:.0f} ms, "
          f"median {sorted(lags)[len(lags) // 2] * 1000:.1f} ms over {len(lags)} probes")
    assert max(lags) < 2.0


def test_failed_logins_ban_and_mailctl_ban(srv):
    time.sleep(0.2)
    codes = []
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], context=tls_context(), timeout=10) as s:
        for _ in range(3):
            try:
                s.login("alice@example.com", "not-the-password")
            except smtplib.SMTPAuthenticationError as e:
                codes.append(e.smtp_code)
            except smtplib.SMTPServerDisconnected:
                codes.append("closed")
                break
    assert codes[0] == 535 and codes[-1] in (421, "closed"), codes
    raw, f = connect(srv)                      # banned on every listener now
    assert f.readline().startswith(b"421 4.7.0")
    raw.close()
    out = mailctl(srv.root, "ban", "list", "--json")
    assert out.returncode == 0 and '"127.0.0.1"' in out.stdout, out.stderr
    out = mailctl(srv.root, "ban", "remove", "127.0.0.1")
    assert out.returncode == 0, out.stderr
    assert mailctl(srv.root, "ban", "remove", "127.0.0.1").returncode == 1
    assert mailctl(srv.root, "ban", "remove", "../../etc").returncode == 1
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], context=tls_context(), timeout=10) as s:
        assert s.login("alice@example.com", PW)[0] == 235
    log = (srv.root.log_dir / "mailctl.log")
    assert not log.exists() or PW not in log.read_text()
