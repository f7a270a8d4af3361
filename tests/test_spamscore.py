"""The spam score (engine/accept/spamscore.py) on a real server: points from DNS block lists
served by the loopback DNS server add up; below spam.mark_score the message lands in
INBOX untouched, at or over it in Junk with X-Spam-* headers (and the subject prefix), at
or over spam.reject_score it is refused 550 5.7.1 at the end of DATA. The whitelist,
per-domain overrides, forged X-Spam fields, AUTH and the counters."""
from __future__ import annotations

import json
import logging
import smtplib
import ssl

from engine import directory_edit, settings as settings_mod
from helpers_dnsbl import BOB, block_list, delivered, list_server, listed, message, send

# client (a loopback address) -> the lists naming it: 3 + 2 + 5 + 4 points
ZONE = {**listed("three.bl.example", "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.16"),
        **listed("two.bl.example", "127.0.0.12", "127.0.0.14"),
        **listed("five.bl.example", "127.0.0.13", "127.0.0.14", "127.0.0.16"),
        **listed("four.bl.example", "127.0.0.16")}
LISTS = [block_list("three.bl.example", 3.0), block_list("two.bl.example", 2.0),
         block_list("five.bl.example", 5.0), block_list("four.bl.example", 4.0)]
SETTINGS = {"dnsbl.client_lists": LISTS, "spam.mark_score": 5.0, "spam.reject_score": 10.0,
            "spam.subject_prefix": "[SPAM] "}
REFUSED = "5.7.1 Message refused as spam"


def test_below_at_and_over_each_threshold(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mailctl")
    with list_server(tmp_path, ZONE, **SETTINGS) as (srv, _, root):
        port = srv.ports["smtp"]
        assert send(port, message("none"), "127.0.0.15")[0] == 250        # 0
        assert send(port, message("below"), "127.0.0.11")[0] == 250       # 3
        assert send(port, message("at mark"), "127.0.0.12")[0] == 250     # 5
        assert send(port, message("over mark"), "127.0.0.13")[0] == 250   # 8
        code, text = send(port, message("at reject"), "127.0.0.14")      # 10
        assert code == 550 and text.startswith(REFUSED) and "score 10.0" in text
        code, text = send(port, message("over reject"), "127.0.0.16")    # 12
        assert code == 550 and text.startswith(REFUSED)
        counters = srv.runtime.counters
    inbox, junk = delivered(root), delivered(root, "Junk")
    assert set(inbox) == {"none", "below"}
    # ham is told too, as SpamAssassin does (mail filters and Sieve's spamtest read it)
    assert [(inbox[s]["X-Spam-Flag"], inbox[s]["X-Spam-Score"]) for s in ("none", "below")] == [("NO", "0.0"), ("NO", "3.0")]
    assert set(junk) == {"[SPAM] at mark", "[SPAM] over mark"}
    m = junk["[SPAM] over mark"]
    assert m["X-Spam-Flag"] == "YES" and m["X-Spam-Score"] == "8.0"
    status = " ".join(m["X-Spam-Status"].split())
    assert status == "Yes, score=8.0 required=5.0 tests=DNSBL_five.bl.example,DNSBL_three.bl.example"
    report = " ".join(m["X-Spam-Report"].split())
    assert "3.0 DNSBL three.bl.example: 127.0.0.13 (127.0.0.2)" in report
    assert "5.0 DNSBL five.bl.example: 127.0.0.13 (127.0.0.2)" in report
    assert junk["[SPAM] at mark"]["X-Spam-Score"] == "5.0"
    assert counters["spam_marked"] == 2 and counters["spam_rejected"] == 2 and counters["dnsbl_listed"] == 11
    log = caplog.text          # each tag and refusal with its reasons
    assert "spam: 127.0.0.13: " in log and ": score=8.0: junk for all (+3.0 DNSBL three.bl.example: 127.0.0.13 " \
        "(127.0.0.2); +5.0 DNSBL five.bl.example: 127.0.0.13 (127.0.0.2))" in log
    assert ": score=12.0: rejected (+3.0 DNSBL three.bl.example" in log and "rejected=spam" in log
    assert "dnsbl: 127.0.0.16: DNSBL four.bl.example lists 127.0.0.16 (127.0.0.2): score +4.0" in log


def test_the_whitelist_skips_every_check(tmp_path):
    settings = {**SETTINGS, "spam.whitelist_networks": ["127.0.0.1?"], "spam.whitelist_senders": ["*@friend.example"]}
    with list_server(tmp_path, ZONE, **settings) as (srv, dns_server, root):
        port = srv.ports["smtp"]
        assert send(port, message("by address"), "127.0.0.16")[0] == 250
        assert send(port, message("by sender"), "127.0.0.4", sender="ann@friend.example")[0] == 250
        assert dns_server.queries == []                   # not even asked
        assert srv.runtime.counters["spam_whitelisted"] == 2
    inbox = delivered(root)
    assert set(inbox) == {"by address", "by sender"} and "X-Spam-Score" not in inbox["by address"]


def test_a_domain_of_its_own_and_mixed_recipients(tmp_path):
    accounts = {BOB: "bob-password-1", "ann@other.example": "ann-password-1", "eve@quiet.example": "eve-password-1"}

    def prepare(root, cfg):
        directory_edit.set_domain(root, cfg, "other.example", spam_reject_score=0, spam_mark_score=2.5)
        directory_edit.set_domain(root, cfg, "quiet.example", spam_scoring=False)
    with list_server(tmp_path, ZONE, accounts=accounts, domains=("example.com", "other.example", "quiet.example"),
                     prepare=prepare, **SETTINGS) as (srv, _, root):
        port = srv.ports["smtp"]
        # 3 points: over other.example's own mark only
        assert send(port, message("three"), "127.0.0.11", rcpts=(BOB, "ann@other.example"))[0] == 250
        # 10 points: example.com refuses, other.example never does: one answer for all, Junk for both
        assert send(port, message("ten"), "127.0.0.14", rcpts=(BOB, "ann@other.example"))[0] == 250
        # scoring off for quiet.example: its copy in INBOX, untouched
        assert send(port, message("quiet"), "127.0.0.13", rcpts=(BOB, "eve@quiet.example"))[0] == 250
        assert send(port, message("alone"), "127.0.0.14", rcpts=("ann@other.example",))[0] == 250
    # one message for all: its headers (and subject) say spam, only the marking domain's copy is in Junk
    assert set(delivered(root)) == {"[SPAM] three"} and set(delivered(root, "Junk")) == {"[SPAM] ten", "[SPAM] quiet"}
    assert set(delivered(root, "Junk", "ann", "other.example")) == {"[SPAM] three", "[SPAM] ten", "[SPAM] alone"}
    assert set(delivered(root, "INBOX", "eve", "quiet.example")) == {"[SPAM] quiet"}


def test_forged_spam_fields_are_removed_and_auth_is_never_scored(tmp_path):
    forged = "X-Spam-Status: No, score=-10\r\nX-Spam-Flag: NO\r\nx-spam-score:\r\n -10\r\n"
    with list_server(tmp_path, ZONE, **SETTINGS) as (srv, _, root):
        port = srv.ports["smtp"]
        assert send(port, message("forged", extra=forged), "127.0.0.15")[0] == 250
        assert send(port, message("forged spam", extra=forged), "127.0.0.13")[0] == 250
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20, source_address=("127.0.0.16", 0)) as s:
            s.ehlo()
            s.starttls(context=ssl._create_unverified_context())
            s.login(BOB, "bob-password-1")
            assert s.sendmail(BOB, [BOB], message("by auth").replace(b"carol@sender.example", BOB.encode())) == {}
    inbox, junk = delivered(root), delivered(root, "Junk")
    # the forged fields are gone; ours say what the checks found (nothing: 0.0)
    forged_ham = inbox["forged"]
    assert forged_ham.get_all("X-Spam-Status") == ["No, score=0.0 required=5.0 tests=none"]
    assert forged_ham.get_all("X-Spam-Flag") == ["NO"] and forged_ham.get_all("X-Spam-Score") == ["0.0"]
    assert forged_ham["X-Other"] is None
    assert junk["[SPAM] forged spam"].get_all("X-Spam-Status")[0].startswith("Yes, score=8.0")
    assert len(junk["[SPAM] forged spam"].get_all("X-Spam-Flag")) == 1
    assert "X-Spam-Score" not in inbox["by auth"]


def test_nothing_is_scored_or_refused_out_of_the_box():
    d = settings_mod.defaults()
    assert d["dnsbl"]["client_lists"] == d["dnsbl"]["domain_lists"] == d["dnsbl"]["uri_lists"] == []
    assert d["spam"]["reject_score"] == 0 and d["spam"]["mark_score"] == 5.0


def test_domain_set_keeps_a_domains_own_spam_settings(tmp_path):
    from conftest import run_cli
    from engine.directory import Directory
    from helpers_server import make_root
    root = make_root(tmp_path)
    r = run_cli(root, "domain", "set", "example.com", "--no-spam-scoring", "--spam-mark", "4", "--spam-reject", "0")
    assert r.code == 0, r.err
    d = Directory.load(root, settings_mod.load(root.config_file)).domain("example.com")
    assert (d.spam_scoring, d.spam_mark_score, d.spam_reject_score) == (False, 4.0, 0.0)
    assert run_cli(root, "domain", "set", "example.com", "--spam-mark", "0").code != 0
    shown = json.loads(run_cli(root, "domain", "show", "example.com", "--json").out)
    assert (shown["spam_scoring"], shown["spam_mark_score"], shown["spam_reject_score"]) == (False, 4.0, 0.0)


def test_sieve_s_spamtest_reads_the_score_of_the_checks(tmp_path):
    """RFC 5235 through real delivery: score 3 of a top of 10 (twice the mark) is spamtest 3
    and 30 %; a score of 0 is 1 (tested, not spam); the user's rule files by it."""
    from engine.maildir import Maildir
    from engine.sieve import scripts
    with list_server(tmp_path, ZONE, **SETTINGS) as (srv, _, root):
        home = Maildir.for_account(root, "example.com", "bob").path
        scripts.put_script(home, "by-score", 'require ["spamtestplus", "fileinto", "mailbox", "variables"];\n'
                                             'if spamtest :percent :matches "*" { set "p" "${1}"; }\n'
                                             'if spamtest :matches "*" { fileinto :create "Score${1}-${p}"; }\n')
        scripts.activate(home, "by-score")
        assert send(srv.ports["smtp"], message("three points"), "127.0.0.11")[0] == 250
        assert send(srv.ports["smtp"], message("no points"), "127.0.0.15")[0] == 250
    assert set(delivered(root, "Score3-30")) == {"three points"}
    assert set(delivered(root, "Score1-0")) == {"no points"}
