"""Spam scanners that fail (engine/accept/spamscan.py): stopped, hung, answering garbage or
hanging up: the message is accepted with X-Spam-Scanned saying it was not scanned (or 451
4.7.1 with on_failure = "defer", and scanned once the scanner is back), never a 5xx, within
the timeout, and the server goes on. Oversized messages are not sent; a forged
X-Spam-Scanned is removed; two serving processes, `mailctl status` and `check message`."""
from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
import time

import pytest

from conftest import run_cli
from helpers_clamav import free_port
from helpers_dnsbl import BOB, delivered, send
from engine import directory_edit, settings as settings_mod
from helpers_server import (REPO, make_root, password_hash, running_server, serve_process, serve_status,
                            tls_context)
from helpers_spamscan import FakeScanner, Rspamd, Spamd, gtube, message

UNAVAILABLE = (451, "4.7.1 Spam scanner unavailable, try again later")
GARBAGE = {
    "binary": b"\xff\xfe\x00HELLO?\r\n" * 20,
    "http-not-json": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"score\": 1.0, \"action\":",
    "http-500": b"HTTP/1.1 500 Internal Server Error\r\n\r\n{}",
    "http-bad-action": b"HTTP/1.1 200 OK\r\n\r\n{\"score\": 1, \"required_score\": 15, \"action\": \"explode\"}",
    "spamd-error": b"SPAMD/1.1 76 Bad header line: (EOF)\r\n\r\n",
    "spamd-no-spam-line": b"SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\n\r\nGTUBE",
    "spamd-bad-score": b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; lots / 5.0\r\n\r\n",
    "hangup": b"",
}


def scan_root(tmp_path, **settings):
    values = {"queue.offline": True, "spam.whitelist_networks": [], "spam_scan.enabled": True,
              "spam_scan.timeout_s": 1, "mailauth.spf": False, "mailauth.dkim": False, "mailauth.dmarc": False,
              "helo_checks.reverse_dns": "off", "helo_checks.sender_domain": "off", **settings}
    return make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings=values)


@pytest.mark.parametrize("kind", ["rspamd", "spamd"])
@pytest.mark.parametrize("how", [*GARBAGE, "hang", "nobody listening"])
def test_a_broken_scanner_never_loses_mail_and_answers_within_the_timeout(tmp_path, kind, how):
    fake = None if how == "nobody listening" else FakeScanner(None if how == "hang" else GARBAGE[how])
    address = fake.address if fake else f"127.0.0.1:{free_port()}"
    root = scan_root(tmp_path, **{f"spam_scan.{kind}": address})
    try:
        with running_server(root) as srv:
            for i in range(2):
                started = time.monotonic()
                assert send(srv.ports["smtp"], message(subject=f"m{i}"))[0] == 250
                assert time.monotonic() - started < 4
            counters = dict(srv.runtime.counters)
        root2 = scan_root(tmp_path / "defer", **{f"spam_scan.{kind}": address, "spam_scan.on_failure": "defer"})
        with running_server(root2) as srv:
            started = time.monotonic()
            assert send(srv.ports["smtp"], gtube()) == UNAVAILABLE
            assert time.monotonic() - started < 4
            assert send(srv.ports["smtp"], gtube())[0] == 451      # the server goes on
    finally:
        if fake:
            fake.close()
    got = delivered(root)
    assert set(got) == {"m0", "m1"} and counters["spam_scan_failed"] == 2
    assert got["m0"]["X-Spam-Scanned"] == f"no ({kind} did not answer)"
    assert delivered(root2) == {}


def test_spamd_stopped_is_451_and_the_retry_after_it_is_back_is_scanned(tmp_path):
    spamd = Spamd(tmp_path / "own").start()
    try:
        root = scan_root(tmp_path, **{"spam_scan.spamd": spamd.address, "spam_scan.on_failure": "defer",
                                      "spam_scan.timeout_s": 10})
        with running_server(root) as srv:
            assert send(srv.ports["smtp"], gtube("first"))[0] == 250
            spamd.stop()
            assert send(srv.ports["smtp"], gtube("second")) == UNAVAILABLE
            spamd.start()
            assert send(srv.ports["smtp"], gtube("second"))[0] == 250        # the sender's retry
    finally:
        spamd.stop()
    assert set(delivered(root, "Junk")) == {"first", "second"} and delivered(root) == {}
    assert "GTUBE" in delivered(root, "Junk")["second"]["X-Spam-Status"]


def test_oversized_messages_are_not_sent_and_forged_headers_go(tmp_path):
    fake = FakeScanner(None)             # a hung scanner: were it asked, the message would wait 1 s
    root = scan_root(tmp_path, **{"spam_scan.rspamd": fake.address, "spam_scan.max_size_kb": 2})
    try:
        with running_server(root) as srv:
            big = message(b"x" * 70 + b"\r\n").replace(b"\r\n\r\n", b"\r\nX-Spam-Scanned: yes, all clean\r\n\r\n", 1)
            big += b"line of text to make it big enough to skip\r\n" * 100
            started = time.monotonic()
            assert send(srv.ports["smtp"], big)[0] == 250
            assert time.monotonic() - started < 0.9
    finally:
        fake.close()
    [m] = delivered(root).values()
    assert m.get_all("X-Spam-Scanned") == ["no (larger than 2 KB)"]


@pytest.fixture(scope="module")
def scanners(tmp_path_factory):
    base = tmp_path_factory.mktemp("scanners")
    with Rspamd(base) as r, Spamd(base) as s:
        yield r, s


def test_two_serving_processes_scan_and_status_says_who_answers(tmp_path, scanners):
    rspamd, spamd = scanners
    root = scan_root(tmp_path, **{"spam_scan.rspamd": rspamd.address, "spam_scan.spamd": spamd.address,
                                  "spam_scan.timeout_s": 10, "server.processes": 2})
    with serve_process(root) as proc:
        deadline = time.monotonic() + 20
        while len(serve_status(root).get("serving", [])) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(6):                   # new connections: the kernel spreads them
            assert send(proc.ports["smtp"], gtube(f"spam {i}") if i % 2 else message(subject=f"ham {i}"))[0] == 250
        status = serve_status(root)
        assert status["spam_scanners"] == "rspamd answers; spamd answers"
        assert status["counters"]["spam_scan_done"] == 12
        assert len({p["pid"] for p in status["serving"]}) == 2
        shown = subprocess.run([sys.executable, "-m", "mailctl", "--root", str(root.path), "status"],
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                               cwd=str(REPO), timeout=60).stdout
        assert "rspamd answers; spamd answers" in shown
    assert set(delivered(root)) == {"ham 0", "ham 2", "ham 4"}
    assert set(delivered(root, "Junk")) == {"spam 1", "spam 3", "spam 5"}


def test_status_when_a_scanner_is_down(tmp_path):
    root = scan_root(tmp_path, **{"spam_scan.rspamd": f"127.0.0.1:{free_port()}"})
    with serve_process(root):
        assert serve_status(root)["spam_scanners"] == "rspamd does NOT answer (mail is accepted unscanned)"


def test_check_message_shows_each_scanner_and_its_rules(tmp_path, scanners):
    rspamd, spamd = scanners
    root = scan_root(tmp_path, **{"spam_scan.rspamd": rspamd.address, "spam_scan.spamd": spamd.address,
                                  "spam_scan.timeout_s": 10, "spam.reject_score": 20})
    (tmp_path / "spam.eml").write_bytes(gtube())
    (tmp_path / "ham.eml").write_bytes(message())
    bad = run_cli(root, "check", "message", str(tmp_path / "spam.eml"), "--ip", "192.0.2.1", "--helo", "mx.far.example",
                  "--from", "alice@far.example")
    assert bad.code == 0, bad.err
    assert "rspamd: reject, score 15 (its threshold 15)" in bad.out and "SpamAssassin: spam, score 1000" in bad.out
    assert "spam:  +15.0 rspamd reject 15/15: GTUBE" in bad.out
    assert bad.out.rstrip().splitlines()[-1].startswith("550 5.7.1 Message refused as spam")
    good = run_cli(root, "check", "message", str(tmp_path / "ham.eml"), "--ip", "192.0.2.1", "--json")
    out = json.loads(good.out)
    assert [line.split(":")[0] for line in out["spam_scanners"]] == ["rspamd", "SpamAssassin"]
    assert out["spam"]["verdict"] == "inbox" and out["reply"] == "250 accepted"
    own = scan_root(tmp_path / "own", **{"spam_scan.rspamd": rspamd.address, "spam_scan.mode": "own"})
    refused = run_cli(own, "check", "message", str(tmp_path / "spam.eml"), "--ip", "192.0.2.1")
    assert refused.out.rstrip().splitlines()[-1] == "554 5.7.1 Tagged As SPAM By rspamd"


def test_submission_whitelisted_clients_and_spam_off_are_not_asked(tmp_path):
    fake = FakeScanner(b"garbage")             # were it asked, the message would say "not scanned"
    root = scan_root(tmp_path, **{"spam_scan.rspamd": fake.address})
    directory_edit.add_account(root, settings_mod.load(root.config_file), "carol@example.com",
                               password_hash("carol-password-1"))
    try:
        with running_server(root) as srv:
            with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20) as s:
                s.starttls(context=tls_context())
                s.login("carol@example.com", "carol-password-1")
                s.mail("carol@example.com")
                s.rcpt(BOB)
                assert s.data(message(subject="by submission").replace(b"alice@far.example", b"carol@example.com"))[0] == 250
            assert "spam_scan_failed" not in srv.runtime.counters
    finally:
        fake.close()
    root2 = scan_root(tmp_path / "white", **{"spam_scan.rspamd": fake.address,
                                             "spam.whitelist_networks": ["127.0.0.1"]})
    with running_server(root2) as srv:
        assert send(srv.ports["smtp"], message(subject="whitelisted"))[0] == 250
    root3 = scan_root(tmp_path / "off", **{"spam_scan.rspamd": fake.address, "spam.enabled": False})
    with running_server(root3) as srv:
        assert send(srv.ports["smtp"], message(subject="spam score off"))[0] == 250
    for r in (root, root2, root3):
        [m] = delivered(r).values()
        assert m["X-Spam-Scanned"] is None and m["X-Spam-Status"] is None
