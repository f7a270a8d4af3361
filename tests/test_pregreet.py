"""Port 25 refuses clients that talk before the greeting (as Postfix postscreen): 554,
disconnect, a log line, and a failure toward the address's ban. Submission ports greet
at once. Real server, real clients, one loopback address per test."""
from __future__ import annotations

import logging
import smtplib
import time

import pytest

from engine import settings as settings_mod
from helpers_server import connect_from, make_root, running_server

WAIT = 0.5


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("pregreet"), accounts={"alice@example.com": "alice-password-1"},
                     settings={"limits.pregreet_wait_s": WAIT, "auth.ban_after_failures": 2,
                               "queue.offline": True})
    with running_server(root) as server:
        yield server


def _talk_first(port: int, source_ip: str) -> bytes:
    s = connect_from(source_ip, port)
    s.sendall(b"EHLO bot.example\r\n")
    data = b""
    while chunk := s.recv(4096):        # to the close, or to the end of the EHLO reply
        data += chunk
        if b"\r\n250 " in data:
            break
    s.close()
    return data


def test_a_client_talking_first_on_port_25_is_refused_logged_and_banned(srv, caplog):
    caplog.set_level(logging.WARNING, logger="mailctl")
    assert _talk_first(srv.ports["smtp"], "127.0.11.1") == b"554 5.5.1 Protocol error\r\n"
    assert "127.0.11.1 refused: talked before the greeting" in caplog.text
    assert _talk_first(srv.ports["smtp"], "127.0.11.1") == b"554 5.5.1 Protocol error\r\n"
    # two failures (auth.ban_after_failures = 2): the address is banned
    s = connect_from("127.0.11.1", srv.ports["smtp"])
    assert s.makefile("rb").readline().startswith(b"421 4.7.0 Too many failed logins")
    s.close()


def test_a_client_that_talks_and_hangs_up_before_the_greeting_counts_toward_the_ban(srv):
    for _ in range(2):
        s = connect_from("127.0.11.4", srv.ports["smtp"])
        s.sendall(b"EHLO bot.example\r\nMAIL FROM:<spam@bot.example>\r\n")
        s.close()
    time.sleep(WAIT)
    s = connect_from("127.0.11.4", srv.ports["smtp"])
    assert s.makefile("rb").readline().startswith(b"421 4.7.0 Too many failed logins")
    s.close()


def test_a_client_that_waits_is_greeted_after_the_pregreet_wait(srv):
    start = time.monotonic()
    c = smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20, source_address=("127.0.11.2", 0))
    assert time.monotonic() - start >= WAIT * 0.9
    assert c.ehlo("mx.example")[0] == 250
    assert c.sendmail("someone@example.org", ["alice@example.com"], b"Subject: hi\r\n\r\nhello\r\n") == {}
    c.quit()


def test_submission_greets_at_once_and_lets_a_hasty_client_talk(srv):
    reply = _talk_first(srv.ports["submission"], "127.0.11.3")
    assert reply.startswith(b"220 ") and b"250" in reply, reply


def test_the_default_wait_is_one_second_and_documented():
    defaults = settings_mod.validate({}, "", "x")[0]
    assert defaults.limits.pregreet_wait_s == 1
    assert defaults.limits.command_timeout_s == 300         # RFC 5321 4.5.3.2
