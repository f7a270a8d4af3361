"""Connection limits per address and per user+address (IMAP, POP3), counted across the
serving processes, and idle limits that shrink when a server is near its caps (SMTP,
IMAP before login). Real servers, real clients, one loopback address per test."""
from __future__ import annotations

import contextlib
import imaplib
import socket
import time

import pytest

from helpers_server import (IMAP4From, POP3From, connect_from, make_root, running_server, serve_process,
                            wait_for_processes)

PW = "alice-password-1"


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("conns"), accounts={"alice@example.com": PW},
                     settings={"auth.allow_plaintext": True, "server.processes": 2,
                               "mailbox.max_sessions": 50, "mailbox.max_connections_per_ip": 10,
                               "mailbox.max_userip_connections": 3})
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        yield root, proc


def _greetings(source_ip: str, port: int, count: int) -> tuple[list[socket.socket], list[bytes]]:
    socks, greetings = [], []
    for _ in range(count):
        s = connect_from(source_ip, port)
        socks.append(s)
        greetings.append(s.makefile("rb").readline())
    return socks, greetings


def _close(socks) -> None:
    for s in socks:
        s.close()


def test_one_address_cannot_take_every_imap_slot(two_procs):
    root, proc = two_procs
    socks, greetings = _greetings("127.0.14.1", proc.ports["imap"], 60)
    try:
        kept = [g for g in greetings if g.startswith(b"* OK")]
        refused = [g for g in greetings if g not in kept]
        assert len(kept) == 10, greetings
        assert set(refused) == {b"* BYE [UNAVAILABLE] Too many connections from your address\r\n"}
        c = IMAP4From("127.0.15.1", proc.ports["imap"])
        assert c.login("alice@example.com", PW)[0] == "OK"
        c.logout()
    finally:
        _close(socks)


def test_one_address_cannot_take_every_pop3_slot(two_procs):
    root, proc = two_procs
    socks, greetings = _greetings("127.0.14.2", proc.ports["pop3"], 15)
    try:
        assert sum(g.startswith(b"+OK") for g in greetings) == 10, greetings
        assert greetings[-1] == b"-ERR [IN-USE] Too many connections from your address\r\n"
        pop = POP3From("127.0.15.2", proc.ports["pop3"])
        pop.user("alice@example.com")
        assert pop.pass_(PW).startswith(b"+OK")
        pop.quit()
    finally:
        _close(socks)


def test_logins_per_user_and_address_are_limited(two_procs):
    root, proc = two_procs
    port = proc.ports["imap"]
    clients = [IMAP4From("127.0.14.3", port) for _ in range(4)]
    try:
        for c in clients[:3]:
            assert c.login("alice@example.com", PW)[0] == "OK"
        with pytest.raises(imaplib.IMAP4.error, match=r"\[LIMIT\] Maximum number of connections from user\+IP"):
            clients[3].login("alice@example.com", PW)
        other = IMAP4From("127.0.14.4", port)         # the same user from another address
        assert other.login("alice@example.com", PW)[0] == "OK"
        other.logout()
        clients[0].logout()                           # a slot comes free
        assert clients[3].login("alice@example.com", PW)[0] == "OK"
    finally:
        for c in clients[1:]:
            with contextlib.suppress(Exception):
                c.logout()


def _closed_after(sock: socket.socket, wait: float) -> tuple[bytes, float]:
    """The last line before the server closed, and how long that took (wait at most `wait`)."""
    sock.settimeout(wait)
    start = time.monotonic()
    data = b""
    with contextlib.suppress(socket.timeout, ConnectionError):
        while chunk := sock.recv(4096):
            data += chunk
    return data, time.monotonic() - start


@pytest.fixture(scope="module")
def stress_server(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("stress"), accounts={"alice@example.com": PW},
                     settings={"limits.command_timeout_s": 30, "limits.stress_timeout_s": 1,
                               "limits.max_connections_per_ip": 5,
                               "mailbox.login_timeout_s": 30, "mailbox.stress_login_timeout_s": 1,
                               "mailbox.max_connections_per_ip": 5})
    with running_server(root) as srv:
        yield srv


@pytest.mark.parametrize("listener,closing,calm_ip,crowd_ip", [
    ("smtp", b"421 4.4.2 ", "127.0.7.1", "127.0.7.2"),
    ("imap", b"* BYE Autologout", "127.0.7.3", "127.0.7.4")])
def test_idle_limit_shrinks_near_the_per_address_cap(stress_server, listener, closing, calm_ip, crowd_ip):
    port = stress_server.ports[listener]
    calm = connect_from(calm_ip, port)
    calm.recv(1024)                            # the greeting
    data, waited = _closed_after(calm, 2.5)
    assert data == b"", data                   # one connection from its address: no stress
    crowd = [connect_from(crowd_ip, port) for _ in range(5)]   # the fifth is over 80 % of 5
    try:
        for s in crowd:
            s.recv(1024)
        # one command, so the next wait for a command starts with all five counted (the
        # order the server took the five in is the kernel's; a wait begun earlier keeps
        # its longer limit, as in Postfix)
        crowd[-1].sendall(b"NOOP\r\n" if listener == "smtp" else b"a NOOP\r\n")
        assert crowd[-1].recv(1024)[:1] in (b"2", b"a")
        data, waited = _closed_after(crowd[-1], 15)
        assert data.startswith(closing), data
        assert waited < 10, waited
    finally:
        _close(crowd + [calm])
