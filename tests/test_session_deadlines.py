"""The idle limit and the command time limit of IMAP and POP3 sessions (engine.watchdog):
a session silent past the idle limit is closed with its protocol's text, one that keeps
talking is not, and a command past the command time limit is answered NO while the
session goes on. The limits are set below their checked minimums in the in-process
server's settings, so each test takes a few seconds."""
from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from engine.watchdog import Watchdog
from helpers_raw import Raw
from helpers_server import make_root, running_server

ALICE = "alice@example.com"
PASSWORD = "secret-pass-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("deadlines"), accounts={ALICE: PASSWORD},
                     settings={"auth.allow_plaintext": True})
    with running_server(root) as srv:
        limits = srv.runtime.settings.mailbox
        saved = limits.idle_timeout_s, limits.login_timeout_s, limits.command_time_limit_s
        limits.idle_timeout_s, limits.login_timeout_s = 2, 2
        yield srv
        limits.idle_timeout_s, limits.login_timeout_s, limits.command_time_limit_s = saved


def _closed_with(r: Raw, text: bytes) -> float:
    """Seconds until the server said `text` and closed the connection."""
    started = time.monotonic()
    assert r.line() == text
    with pytest.raises(ConnectionError):
        r.line()
    return time.monotonic() - started


def _imap(server) -> Raw:
    r = Raw(server.ports["imap"])
    assert r.cmd(f'LOGIN {ALICE} "{PASSWORD}"'.encode()).startswith(b"t1 OK")
    return r


def _pop3(server) -> Raw:
    r = Raw(server.ports["pop3"])
    for line in (f"USER {ALICE}", f"PASS {PASSWORD}"):
        r.send(line.encode() + b"\r\n")
        assert r.line().startswith(b"+OK")
    return r


@pytest.mark.parametrize("protocol,connect,noop,closing", [
    ("imap", _imap, b"t2 NOOP\r\n", b"* BYE Autologout; idle for too long"),
    ("pop3", _pop3, b"NOOP\r\n", b"-ERR Autologout; idle for too long")])
def test_a_session_idle_past_the_limit_is_closed_and_a_talking_one_is_not(server, protocol, connect,
                                                                          noop, closing):
    r = connect(server)
    try:
        # 3 s of commands 0.5 s apart: past the 2 s limit counted from the first one
        for _ in range(6):
            time.sleep(0.5)
            r.send(noop)
            reply = r.line()
            assert reply.startswith(b"t2 OK" if protocol == "imap" else b"+OK"), reply
        waited = _closed_with(r, closing)
        assert 1.5 < waited < 6, waited
    finally:
        r.close()


def test_a_silent_client_before_login_is_closed_at_the_login_limit(server):
    r = Raw(server.ports["imap"])
    try:
        assert 1.5 < _closed_with(r, b"* BYE Autologout; idle for too long") < 6
    finally:
        r.close()


def test_a_command_past_the_time_limit_is_stopped_and_the_session_goes_on(server):
    """AUTHENTICATE waiting for its client's response is a command that runs: the command
    time limit (1 s, shorter than the 2 s idle limit before it) stops it."""
    server.runtime.settings.mailbox.command_time_limit_s = 1
    r = Raw(server.ports["imap"])
    try:
        started = time.monotonic()
        r.send(b"a1 AUTHENTICATE PLAIN\r\n")
        assert r.line() == b"+ "
        assert r.line() == b"a1 NO Command took too long and was stopped"
        assert 0.5 < time.monotonic() - started < 1.9
        assert r.cmd(b"NOOP", b"a2") == b"a2 OK NOOP completed"
        # the idle limit holds again once the command is over
        assert 1.5 < _closed_with(r, b"* BYE Autologout; idle for too long") < 6
    finally:
        r.close()


# -- the watchdog itself --------------------------------------------------------------

def _run(coro_fn):
    return asyncio.run(coro_fn())


def test_the_watchdog_cancels_at_the_deadline_and_says_it_did():
    async def main():
        dog = Watchdog()
        dog.watch(10)
        dog.watch(0.05)         # shorter than the timer already set: it comes sooner
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.sleep(5)
        assert dog.expired() and asyncio.current_task().cancelling() == 0
        dog.close()
        return time.monotonic() - started
    assert _run(main) < 1


def test_a_deadline_moved_on_in_time_never_fires():
    async def main():
        dog = Watchdog()
        for _ in range(8):
            dog.watch(0.2)
            await asyncio.sleep(0.1)
        dog.stop()
        await asyncio.sleep(0.3)        # stopped: the timer still due does nothing
        dog.close()
    _run(main)


def test_another_cancellation_is_not_taken_for_the_deadline():
    async def main():
        dog = Watchdog()
        dog.watch(5)
        asyncio.get_running_loop().call_later(0.05, asyncio.current_task().cancel)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            assert not dog.expired()
            raise
        finally:
            dog.close()
    with pytest.raises(asyncio.CancelledError):
        _run(main)


def test_a_swallowed_deadline_is_taken_back_by_stop():
    async def main():
        dog = Watchdog()
        dog.watch(0.05)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)
        dog.stop()
        assert asyncio.current_task().cancelling() == 0
        await asyncio.sleep(0.01)       # not cancelled again
        dog.close()
    _run(main)
