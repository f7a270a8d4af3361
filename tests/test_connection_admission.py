"""IMAP and POP3 connections share one admission (engine/connection.py): a ban or a
limit decided once refuses both protocols, each in its own words, and a graceful stop
ends both (IMAP with its goodbye). Real listeners, raw sockets, one loopback address
per test so bans and counts don't leak between tests."""
from __future__ import annotations

import socket
import time

import pytest

from helpers_mail import add_users, configure, new_root, running
from helpers_server import connect_from

IMAP_BANNED = b"* BYE Your address is temporarily banned after failed logins\r\n"
POP3_BANNED = b"-ERR [SYS/TEMP] Your address is temporarily banned after failed logins\r\n"
IMAP_FULL = b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n"
POP3_FULL = b"-ERR [SYS/TEMP] Too many connections, try again later\r\n"
IMAP_ADDRESS_FULL = b"* BYE [UNAVAILABLE] Too many connections from your address\r\n"
POP3_ADDRESS_FULL = b"-ERR [IN-USE] Too many connections from your address\r\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = new_root(tmp_path_factory.mktemp("admission") / "root")
    add_users(root, ["alice"])
    configure(root, {"mailbox.max_sessions": 4, "mailbox.max_connections_per_ip": 2})
    with running(root, ("imap", "pop3")) as server:
        yield server


class Client:
    def __init__(self, srv, protocol: str, source_ip: str):
        self.sock = connect_from(source_ip, srv.port(protocol), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()

    def rest(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        try:
            return self.file.read()
        except (socket.timeout, ConnectionError):
            return b"<still open>"

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def connect(srv):
    """connect(protocol, source_ip) -> a Client with its first line read, closed when the
    test ends. The test starts once the earlier tests' clients are gone (the global limit)."""
    _no_sessions_left(srv)
    clients = []

    def make(protocol: str, source_ip: str) -> Client:
        clients.append(Client(srv, protocol, source_ip))
        return clients[-1]
    yield make
    for c in clients:
        c.close()


def _no_sessions_left(srv) -> None:
    deadline = time.monotonic() + 10
    while srv.runtime.sessions.count() and time.monotonic() < deadline:
        time.sleep(0.02)


def _greeted(client: Client) -> bool:
    return client.greeting.startswith((b"* OK [CAPABILITY ", b"+OK mailctl POP3 ready"))


def test_one_ban_refuses_imap_and_pop3_each_in_its_words(srv, connect):
    srv.runtime.bans.ban("127.0.31.1", 10, "test")
    try:
        imap, pop3 = connect("imap", "127.0.31.1"), connect("pop3", "127.0.31.1")
        assert (imap.greeting, pop3.greeting) == (IMAP_BANNED, POP3_BANNED)
        assert (imap.rest(), pop3.rest()) == (b"", b"")          # and closed
        other = connect("pop3", "127.0.31.2")               # another address is served
        assert _greeted(other)
    finally:
        srv.runtime.bans.remove("127.0.31.1")


def test_the_limit_per_address_counts_imap_and_pop3_together(srv, connect):
    imap, pop3 = connect("imap", "127.0.32.1"), connect("pop3", "127.0.32.1")
    assert _greeted(imap) and _greeted(pop3)
    third_imap, third_pop3 = connect("imap", "127.0.32.1"), connect("pop3", "127.0.32.1")
    assert (third_imap.greeting, third_pop3.greeting) == (IMAP_ADDRESS_FULL, POP3_ADDRESS_FULL)


def test_the_global_limit_counts_imap_and_pop3_together(srv, connect):
    held = [connect(protocol, f"127.0.33.{n}") for n, protocol in
            enumerate(("imap", "pop3", "imap", "pop3"), start=1)]
    assert all(_greeted(c) for c in held)
    imap, pop3 = connect("imap", "127.0.33.9"), connect("pop3", "127.0.33.9")
    assert (imap.greeting, pop3.greeting) == (IMAP_FULL, POP3_FULL)


def test_a_graceful_stop_ends_both_and_imap_says_goodbye(srv, connect):
    imap, pop3 = connect("imap", "127.0.34.1"), connect("pop3", "127.0.34.1")
    assert _greeted(imap) and _greeted(pop3)

    async def stop_sessions():      # what Service does at a graceful stop
        for session in srv.runtime.sessions.list():
            if session.peer_ip == "127.0.34.1":
                session.closer()
    srv.call(stop_sessions)
    assert imap.rest() == b"* BYE Server shutting down\r\n"
    assert pop3.rest() == b""
