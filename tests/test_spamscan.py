"""Spam scanning with a real rspamd (/checkv2) and a real SpamAssassin spamd (SYMBOLS) on
port 25 (engine/accept/spamscan.py): GTUBE is spam and a normal message ham for each, their
rules in X-Spam-Status; their score adds to the spam score (Junk, or 550 at
spam.reject_score) or, mode "own", their own verdict decides (554 Tagged As SPAM By ...);
per-domain and per-account switches."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli
from helpers_dnsbl import BOB, delivered, send
from helpers_server import make_root, running_server
from helpers_spamscan import FakeScanner, Rspamd, Spamd, gtube, message

SCANNERS = ("rspamd", "spamd")


@pytest.fixture(scope="module")
def scanners(tmp_path_factory):
    base = tmp_path_factory.mktemp("scanners")
    with Rspamd(base) as r, Spamd(base) as s:
        yield {"rspamd": r, "spamd": s}


def scan_root(tmp_path, **settings):
    values = {"queue.offline": True, "spam.whitelist_networks": [], "spam_scan.enabled": True,
              "spam_scan.timeout_s": 10, "mailauth.spf": False, "mailauth.dkim": False, "mailauth.dmarc": False,
              "helo_checks.reverse_dns": "off", "helo_checks.sender_domain": "off", **settings}
    return make_root(tmp_path, accounts={BOB: "bob-password-1", "carl@example.com": "carl-password-1"},
                     settings=values)


def status(msg) -> str:
    return " ".join(str(msg["X-Spam-Status"]).split())


@pytest.mark.parametrize("scanner", SCANNERS)
def test_gtube_goes_to_junk_and_ham_to_inbox_with_the_rules_in_the_headers(tmp_path, scanners, scanner):
    root = scan_root(tmp_path, **{f"spam_scan.{scanner}": scanners[scanner].address})
    with running_server(root) as srv:
        assert send(srv.ports["smtp"], gtube("buy now"))[0] == 250
        assert send(srv.ports["smtp"], message(subject="lunch"))[0] == 250
        counters = dict(srv.runtime.counters)
    [spam] = delivered(root, "Junk").values()
    [ham] = delivered(root).values()
    assert spam["X-Spam-Flag"] == "YES" and status(spam).startswith("Yes, score=")
    assert "GTUBE" in status(spam).partition("tests=")[2].split(",")
    engine = "rspamd" if scanner == "rspamd" else "SpamAssassin"
    assert f"{engine} " in " ".join(spam["X-Spam-Report"].split())
    assert ham["X-Spam-Flag"] == "NO" and status(ham).startswith("No, score=")
    assert "GTUBE" not in status(ham) and status(ham).partition("tests=")[2] not in ("", "none")
    assert ham["X-Spam-Scanned"] is None and counters["spam_scan_done"] == 2


@pytest.mark.parametrize("scanner", SCANNERS)
def test_their_score_adds_up_to_the_reject_score(tmp_path, scanners, scanner):
    root = scan_root(tmp_path, **{f"spam_scan.{scanner}": scanners[scanner].address, "spam.reject_score": 12})
    with running_server(root) as srv:
        code, text = send(srv.ports["smtp"], gtube())
        assert code == 550 and text.startswith("5.7.1 Message refused as spam")
        assert send(srv.ports["smtp"], message())[0] == 250
    assert len(delivered(root)) == 1 and not delivered(root, "Junk")


def test_both_scanners_together_each_give_their_rules(tmp_path, scanners):
    root = scan_root(tmp_path, **{"spam_scan.rspamd": scanners["rspamd"].address,
                                  "spam_scan.spamd": scanners["spamd"].address})
    with running_server(root) as srv:
        assert send(srv.ports["smtp"], gtube())[0] == 250
    [spam] = delivered(root, "Junk").values()
    report = " ".join(spam["X-Spam-Report"].split())
    assert "rspamd reject 15/15: GTUBE" in report and "SpamAssassin spam 99" in report and "GTUBE" in report.rpartition("SpamAssassin")[2]
    assert float(spam["X-Spam-Score"]) > 1000


def test_own_mode_rspamd_reject_is_554_and_its_add_header_is_junk(tmp_path, scanners):
    root = scan_root(tmp_path, **{"spam_scan.rspamd": scanners["rspamd"].address, "spam_scan.mode": "own",
                                  "spam.subject_prefix": "[SPAM] "})
    with running_server(root) as srv:
        assert send(srv.ports["smtp"], gtube()) == (554, "5.7.1 Tagged As SPAM By rspamd")
        assert send(srv.ports["smtp"], message(subject="lunch"))[0] == 250
    assert list(delivered(root)) == ["lunch"] and not delivered(root, "Junk")


def test_own_mode_spamd_spam_is_junk_and_over_its_reject_score_554(tmp_path, scanners):
    root = scan_root(tmp_path, **{"spam_scan.spamd": scanners["spamd"].address, "spam_scan.mode": "own"})
    with running_server(root) as srv:
        assert send(srv.ports["smtp"], gtube("one"))[0] == 250
    [spam] = delivered(root, "Junk").values()
    assert spam["X-Spam-Flag"] == "YES" and spam["X-Spam-Score"] == "0.0"      # its points are not ours
    assert "GTUBE" in status(spam)
    root2 = scan_root(tmp_path / "two", **{"spam_scan.spamd": scanners["spamd"].address, "spam_scan.mode": "own",
                                           "spam_scan.reject_score": 500})
    with running_server(root2) as srv:
        assert send(srv.ports["smtp"], gtube("two")) == (554, "5.7.1 Tagged As SPAM By SpamAssassin")
        assert send(srv.ports["smtp"], message())[0] == 250
    assert not delivered(root2, "Junk") and len(delivered(root2)) == 1


def test_domain_off_and_account_opt_out(tmp_path, scanners):
    root = scan_root(tmp_path, **{"spam_scan.rspamd": scanners["rspamd"].address})
    assert run_cli(root, "account", "spam-filter", "carl@example.com", "off").code == 0
    with running_server(root) as srv:
        assert send(srv.ports["smtp"], gtube("to carl"), rcpts=("carl@example.com",))[0] == 250
        assert send(srv.ports["smtp"], gtube("to both"), rcpts=(BOB, "carl@example.com"))[0] == 250
    assert set(delivered(root, user="carl")) == {"to carl", "to both"}     # never Junk for carl
    assert set(delivered(root, "Junk")) == {"to both"}                      # bob's copy is
    assert run_cli(root, "domain", "set", "example.com", "--no-spam-scan").code == 0
    with running_server(root) as srv:
        assert send(srv.ports["smtp"], gtube("domain off"))[0] == 250
        assert "spam_scan_done" not in srv.runtime.counters
    m = delivered(root)["domain off"]
    # the other checks' score (nothing scored) is shown, no scanner's rule
    assert m["X-Spam-Status"] == "No, score=0.0 required=5.0 tests=none" and m["X-Spam-Scanned"] is None



def test_an_opted_out_account_is_never_refused_and_an_alias_marks_only_the_others(tmp_path, scanners):
    root = scan_root(tmp_path, **{"spam_scan.rspamd": scanners["rspamd"].address, "spam.reject_score": 12})
    assert run_cli(root, "account", "spam-filter", "carl@example.com", "off").code == 0
    assert run_cli(root, "alias", "add", "team@example.com", BOB, "carl@example.com").code == 0
    with running_server(root) as srv:
        assert send(srv.ports["smtp"], gtube("to carl"), rcpts=("carl@example.com",))[0] == 250
        assert send(srv.ports["smtp"], gtube("to bob"))[0] == 550                          # bob refuses it
        assert send(srv.ports["smtp"], gtube("to both"), rcpts=(BOB, "carl@example.com"))[0] == 250
    root2 = scan_root(tmp_path / "alias", **{"spam_scan.rspamd": scanners["rspamd"].address})
    assert run_cli(root2, "account", "spam-filter", "carl@example.com", "off").code == 0
    assert run_cli(root2, "alias", "add", "team@example.com", BOB, "carl@example.com").code == 0
    with running_server(root2) as srv:
        assert send(srv.ports["smtp"], gtube("to the team"), rcpts=("team@example.com",))[0] == 250
    assert set(delivered(root, user="carl")) == {"to carl", "to both"}
    assert set(delivered(root, "Junk")) == {"to both"}
    assert set(delivered(root2, user="carl")) == {"to the team"}            # carl's copy in INBOX
    assert set(delivered(root2, "Junk")) == {"to the team"} and not delivered(root2)


def rspamd_says(action: str) -> bytes:
    body = json.dumps({"score": 7.5, "required_score": 15.0, "action": action,
                       "symbols": {"R_SUSPECT": {"name": "R_SUSPECT", "score": 7.5}}}).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body


@pytest.mark.parametrize("action, reply, folder", [
    ("greylist", (451, "4.7.1 Please Try Again Later"), None),
    ("soft reject", (451, "4.7.1 Please Try Again Later"), None),
    ("add header", 250, "Junk"),
    ("rewrite subject", 250, "Junk"),
    ("no action", 250, "INBOX"),
])
def test_own_mode_follows_each_rspamd_action(tmp_path, action, reply, folder):
    fake = FakeScanner(rspamd_says(action))          # rspamd's protocol, the action of the test's choice
    root = scan_root(tmp_path, **{"spam_scan.rspamd": fake.address, "spam_scan.mode": "own",
                                  "spam.subject_prefix": "[SPAM] "})
    try:
        with running_server(root) as srv:
            got = send(srv.ports["smtp"], message(subject="hi"))
    finally:
        fake.close()
    assert (got if isinstance(reply, tuple) else got[0]) == reply
    if folder is None:
        assert not delivered(root) and not delivered(root, "Junk")
        return
    [m] = delivered(root, folder).values()
    assert status(m).startswith("Yes" if folder == "Junk" else "No") and "tests=R_SUSPECT" in status(m)
    assert m["Subject"] == ("[SPAM] hi" if folder == "Junk" else "hi")
