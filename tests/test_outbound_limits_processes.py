"""Sending limits are counted in state/sendlimits/, shared by every serving process and kept
across restarts (a real `mailctl serve`): one account's sessions on two processes share
one count, two sessions racing for the last place under a limit cannot both take it, and
a restart forgets nothing. sendmail(1) of a local user whose login is an account counts
against that account."""
from __future__ import annotations

import os
import smtplib

import pytest

import engine.accept.local  # noqa: F401  (imported before fork: a child that became another user may not
import engine.localsubmit  # noqa: F401   reach the Python packages; it only runs them)
from engine.queue import Queue
from helpers_process import smtp_sessions_in_two_processes
from helpers_server import make_root, running_server, serve_process, wait_for_processes
from test_outbound_limits import ALICE, BASE, BOB, PASSWORDS, message, send, show
from test_sendmail_local_users import sendmail_as

LIMIT_TEXT = f"4.7.1 {ALICE}: sending limit of 2 messages per hour reached, try again later"


def _queued(root) -> int:
    return sum(1 for e in Queue(root).all() if e.auth_user == ALICE)


def test_two_serving_processes_share_the_counts_and_never_both_take_the_last_place(tmp_path):
    root = make_root(tmp_path, accounts=PASSWORDS, settings={
        **BASE, "server.processes": 2, "send_limits.messages_per_hour": 2})
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        one, two = smtp_sessions_in_two_processes(proc.ports["submission"], proc.proc.pid).values()
        for s in (one, two):
            s.ehlo("client.example")
            s.login(ALICE, PASSWORDS[ALICE])
        try:
            assert send(one, ALICE, ["x@remote.example"]) == (250, "")
            # both sessions pass RCPT while one place is left ...
            for s in (one, two):
                s.rset()
                assert s.mail(ALICE)[0] == 250
                assert s.rcpt("y@remote.example")[0] == 250
            # ... the first DATA takes it, the second is refused when the queue would commit it
            assert one.data(message(ALICE, 1))[0] == 250
            code, text = two.data(message(ALICE, 2))
            assert (code, text.decode()) == (451, LIMIT_TEXT)
            # the other process sees the count at RCPT too
            assert send(two, ALICE, ["z@remote.example"]) == (451, LIMIT_TEXT)
        finally:
            for s in (one, two):
                s.close()
    assert _queued(root) == 2


def test_the_counts_survive_a_restart(tmp_path):
    root = make_root(tmp_path, accounts=PASSWORDS, settings={**BASE, "send_limits.messages_per_hour": 2})
    for expected in ([250, 250], [451]):
        with serve_process(root) as proc:
            with smtplib.SMTP("127.0.0.1", proc.ports["submission"], timeout=20) as s:
                s.login(ALICE, PASSWORDS[ALICE])
                assert [send(s, ALICE, ["x@remote.example"])[0] for _ in expected] == expected
            assert proc.terminate() == 0
    assert show(root, ALICE)["messages_last_hour"] == 2


@pytest.fixture
def open_tmp(open_tmp_path):
    if os.geteuid() != 0:
        pytest.skip("running sendmail as another user needs root")
    return open_tmp_path


def test_sendmail_of_a_local_user_counts_against_its_account(open_tmp):
    root = make_root(open_tmp, accounts={**PASSWORDS, "nobody@example.com": "nobody-password-1"},
                     settings={**BASE, "sendmail.sender_domain": "example.com", "send_limits.messages_per_hour": 1})
    with running_server(root):
        code, err = sendmail_as("nobody", root, ["friend@remote.example"])
        assert code == 0, err
        code, err = sendmail_as("nobody", root, ["friend@remote.example"])
        assert code == 75 and "nobody@example.com: sending limit of 1 messages per hour reached" in err, err
        assert err.count("\n") == 1 and str(root.path) not in err
        code, err = sendmail_as("nobody", root, [BOB])                     # local mail never counts
        assert code == 0, err
    assert show(root, "nobody@example.com")["messages_last_hour"] == 1
    assert sum(1 for e in Queue(root).all()) == 1


def _record_many(root_path: str, n: int, start, results) -> None:
    from engine.root import Root
    from engine.sendcounts import SendCounts
    from engine.sendlimits_settings import Limits
    store = SendCounts(Root(root_path))
    start.wait()
    taken = sum(1 for i in range(n) if store.record(ALICE, Limits(messages_per_hour=30), [f"r{i}@far.example"])
                is None)
    results.put(taken)


def test_concurrent_commits_of_four_processes_take_exactly_the_limit(tmp_path):
    """Check and count are one step under the account's lock: 4 processes x 20 messages
    against a limit of 30 take exactly 30 places, never one more."""
    import multiprocessing
    root = make_root(tmp_path, accounts=PASSWORDS)
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_record_many, args=(str(root.path), 20, start, results)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    taken = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert sum(taken) == 30
    assert show(root, ALICE)["messages_last_hour"] == 30


def test_sendmail_through_a_domain_alias_counts_against_the_account_itself(open_tmp):
    from engine import directory_edit, settings as settings_mod
    root = make_root(open_tmp, accounts={"nobody@example.com": "nobody-password-1"},
                     settings={**BASE, "sendmail.sender_domain": "example.net", "send_limits.messages_per_hour": 1})
    directory_edit.add_domain_alias(root, settings_mod.load(root.config_file), "example.com", "example.net")
    with running_server(root):
        code, err = sendmail_as("nobody", root, ["friend@remote.example"])
        assert code == 0, err
        code, err = sendmail_as("nobody", root, ["friend@remote.example"])
        assert code == 75 and "nobody@example.com: sending limit of 1 messages per hour" in err, err
    assert show(root, "nobody@example.com")["messages_last_hour"] == 1
