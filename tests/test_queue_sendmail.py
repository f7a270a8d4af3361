"""mailctl send and sendmail-mailctl: sendmail's flags, local delivery and queueing
without a running server."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import run_mailctl
from engine.queue import Queue
from helpers_queue import inbox, local_root

MSG = (b"From: Bob <bob@example.com>\nTo: alice@example.com, far@remote.example\n"
       b"Bcc: hidden@remote.example\nSubject: via sendmail\n\nline one\n.\nafter the dot\n")


@pytest.fixture
def root(tmp_path_factory, tmp_path):
    return local_root(tmp_path_factory, tmp_path)


def sendmail(root, *args, input: bytes):
    return subprocess.run([sys.executable, "-m", "mailctl.sendmail", "--root", str(root.path), *args],
                          input=input, capture_output=True, timeout=60)


def test_send_t_oi_delivers_locally_and_queues_the_rest(root):
    r = run_mailctl(root, "send", "-t", "-oi", "--json", input=MSG)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["delivered"] == ["alice@example.com"] and out["sender"] == "bob@example.com"
    [m] = inbox(root, "alice@example.com")
    assert b"after the dot" in m and b"Bcc" not in m and b"hidden" not in m
    assert b"Message-ID: " in m and b"Date: " in m and b"Received: from local user " in m and b"(uid " in m
    [env] = Queue(root).all()
    assert [r.address for r in env.recipients] == ["far@remote.example", "hidden@remote.example"]
    assert env.sender == "bob@example.com" and env.source == "sendmail"


def test_without_i_a_lone_dot_ends_the_message_and_f_sets_sender(root):
    r = run_mailctl(root, "send", "-f", "bounces@example.com", "alice@example.com", input=MSG)
    assert r.returncode == 0, r.stderr
    [m] = inbox(root, "alice@example.com")
    assert b"line one" in m and b"after the dot" not in m
    assert m.startswith(b"Return-Path: <bounces@example.com>")
    assert Queue(root).count() == 0          # recipients given: To/Cc are not read without -t


def test_sendmail_entry_point(root):
    r = sendmail(root, "-oi", "-f", "bob@example.com", "-odi", "-oem", "alice@example.com", input=MSG)
    assert r.returncode == 0, r.stderr
    assert len(inbox(root, "alice@example.com")) == 1
    r = sendmail(root, "-t", "-i", input=MSG)
    assert r.returncode == 0, r.stderr
    assert len(inbox(root, "alice@example.com")) == 2 and Queue(root).count() == 1


@pytest.mark.parametrize("data,code,needle", [
    (b"", 65, "empty"),
    (b"\x00\x01\x02binary", 65, "not a mail message"),
    (b"Subject: no one\n\nbody\n", 65, "no recipients"),
])
def test_sendmail_bad_input(root, data, code, needle):
    r = sendmail(root, "-t", "-i", input=data)
    assert r.returncode == code and needle in r.stderr.decode()
    assert Queue(root).count() == 0 and not inbox(root, "alice@example.com")


def test_send_unknown_local_user_is_an_error(root):
    r = run_mailctl(root, "send", "-i", "nobody@example.com", input=MSG)
    assert r.returncode == 1 and b"Unknown User" in r.stderr and b"Traceback" not in r.stderr
