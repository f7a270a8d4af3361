"""The IMAP concurrency stress load (tests/imapstress.py), short: 6 clients on 4 shared
mailboxes of one account, against `mailctl serve` with two serving processes, with a POP3
client and an SMTP stream on INBOX; every response is checked (tests/imapcheck.py).
The checker itself is tested first, on transcripts with a violation injected.
The 60-second run and the comparison with Dovecot: bench/imap_stress.py.
"""
from __future__ import annotations

import pytest

from helpers_server import make_root, serve_process, wait_for_processes
from imapcheck import Registry, Selected
from imapstress import Target, run_stress, summary

USER, PASSWORD = "stress@example.com", "secret-pass-1"


def model(uids=(1, 2, 3), expected=None) -> Selected:
    sel = Selected("INBOX", "$Mine", dict(expected or {}))
    sel.untagged(f"* {len(uids)} EXISTS", "SELECT")
    for i, uid in enumerate(uids, 1):
        sel.untagged(f"* {i} FETCH (UID {uid} FLAGS ())", "UID FETCH")
    return sel


def kinds(violations) -> list[str]:
    return [v.kind for v in violations]


def test_checker_passes_a_correct_transcript():
    sel = model(expected={2: True})
    out = []
    for line, command in [("* 2 FETCH (FLAGS (\\Seen $Mine))", "FETCH"), ("* 4 EXISTS", "NOOP"),
                          ("* 1 EXPUNGE", "NOOP"), ("* 3 FETCH (UID 7 FLAGS ())", "UID FETCH"),
                          ("* 2 EXPUNGE", "UID FETCH"), ("* 1 FETCH (UID 2 FLAGS ($Mine))", "IDLE"),
                          ("* 1 RECENT", "IDLE")]:
        out += sel.untagged(line, command)
    assert out == []
    assert sel.uids == [2, 7]
    assert sel.search_result("* SEARCH 1", asked_keyword=True) == []


@pytest.mark.parametrize("command", ["FETCH", "STORE", "SEARCH"])
def test_checker_catches_an_expunge_inside_fetch_store_search(command):
    sel = model()
    assert kinds(sel.untagged("* 2 EXPUNGE", command)) == ["expunge-during-fetch"]
    assert kinds(model().untagged("* 2 EXPUNGE", "UID " + command)) == []      # allowed in UID commands


@pytest.mark.parametrize("line, kind", [
    ("* 2 EXISTS", "exists-decreased"),
    ("* 9 EXPUNGE", "expunge-out-of-range"),
    ("* 4 FETCH (FLAGS ())", "fetch-out-of-range"),
    ("* 2 FETCH (UID 5 FLAGS ($Mine))", "uid-changed"),
    ("* 5 RECENT", "recent-over-exists"),
    ("* 2 FETCH (FLAGS (\\Seen))", "own-keyword"),
    ("* OK [UIDNEXT 3] next", "uidnext-too-low"),
    ("* 1 FETCH (FLAGS (\\Seen \\Seen))", "flags-malformed"),
    ("* 1 FETCH (FLAGS (\\Important))", "flags-malformed"),
])
def test_checker_catches_each_violation(line, kind):
    sel = model(expected={2: True})
    assert kinds(sel.untagged(line, "NOOP", floor_uid=4)) == [kind]


def test_checker_catches_uid_order_and_search_disagreement():
    sel = Selected("INBOX", "$Mine", {1: False, 3: True})
    sel.untagged("* 3 EXISTS", "SELECT")
    sel.untagged("* 1 FETCH (UID 1)", "UID FETCH")
    sel.untagged("* 3 FETCH (UID 3)", "UID FETCH")
    assert kinds(sel.untagged("* 2 FETCH (UID 4)", "UID FETCH")) == ["uid-order"]
    assert kinds(sel.search_result("* SEARCH 1 3", asked_keyword=True)) == ["search-own-keyword"]
    assert kinds(sel.search_result("* SEARCH 4", asked_keyword=False)) == ["search-out-of-range"]
    # [EXPUNGEISSUED]: a message that should match may be left out (expunged elsewhere),
    # but one that must not match still may not appear
    assert sel.search_result("* SEARCH", asked_keyword=True, expunge_issued=True) == []
    assert kinds(sel.search_result("* SEARCH 1 3", asked_keyword=True, expunge_issued=True)) == ["search-own-keyword"]


def test_registry_catches_a_uid_handed_out_twice():
    reg = Registry()
    assert reg.record("box", 7, [1, 2]) == []
    assert kinds(reg.record("box", 7, [2, 3])) == ["uid-duplicate"]
    assert reg.record("other", 7, [2]) == []
    assert reg.highest("box") == 3
    assert reg.uidvalidity("box", 7) == [] and reg.uidvalidity("box", 7) == []
    assert kinds(reg.uidvalidity("box", 8)) == ["uidvalidity-changed"]


@pytest.fixture
def two_processes(tmp_path):
    root = make_root(tmp_path, accounts={USER: PASSWORD}, settings={
        "server.processes": 2, "auth.allow_plaintext": True, "auth.failure_delay_s": 0,
        "mailbox.max_sessions_per_user": 0, "mailbox.max_userip_connections": 0,
        "mailbox.max_connections_per_ip": 0, "limits.max_connections_per_ip": 0, "queue.offline": True})
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        yield proc


def test_stress_short(two_processes):
    ports = two_processes.ports
    result = run_stress(Target(ports["imap"], USER, PASSWORD, pop3_port=ports["pop3"], smtp_port=ports["smtp"]),
                        clients=6, mailboxes=4, seconds=10)
    print(summary(result))
    assert result.commands > 100, summary(result)
    assert result.smtp_messages > 10 and result.pop3_sessions > 3, summary(result)
    assert not result.errors, summary(result)
