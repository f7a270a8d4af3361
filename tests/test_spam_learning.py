"""Learning from users (engine/learning.py, engine/imap/junklearn.py): what a user moves into
Junk over IMAP is learned as spam and what they move out of it as ham, by a real rspamd
(its controller, Bayes statistics in a real redis) and a real spamd (TELL, its own Bayes
database), each checked through the learner's own counts. In the background: a learner
that hangs does not slow the IMAP command, one that is down or answers garbage loses
nothing and is caught up with once it answers."""
from __future__ import annotations

import imaplib
import os
import time
import uuid

import pytest

from helpers_dnsbl import BOB, send
from helpers_server import imap_sessions_in_two_processes, mailctl, make_root, running_server, serve_process
from helpers_server import wait_for_processes
from helpers_spamscan import FakeScanner, LearningRspamd, LearningSpamd, Redis, gtube, message

PASSWORD = "bob-password-1"


@pytest.fixture(scope="module")
def learners(tmp_path_factory):
    base = tmp_path_factory.mktemp("learners")
    with Redis(base) as redis, LearningRspamd(base, redis) as rspamd, LearningSpamd(base) as spamd:
        yield {"rspamd": rspamd, "spamd": spamd}


def learn_root(tmp_path, **settings):
    values = {"queue.offline": True, "spam.whitelist_networks": [], "mailauth.spf": False, "mailauth.dkim": False,
              "mailauth.dmarc": False, "helo_checks.reverse_dns": "off", "helo_checks.sender_domain": "off",
              "spam_learn.retry_s": 1, "auth.allow_plaintext": True, **settings}
    return make_root(tmp_path, accounts={BOB: PASSWORD}, settings=values)


def words(subject: str) -> bytes:
    """A message body of its own (the learners know a message they learned before)."""
    token = uuid.uuid4().hex
    return message(f"Dear friend {token}, cheap watches and pills for {subject}, order today, "
                   f"limited offer {token[:8]} for our valued customers only.\r\n".encode(), subject)


def imap(port: int) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(BOB, PASSWORD)
    return c


def wait_learned(learner, expected: dict[str, int], timeout: float = 30) -> None:
    """Until the learner's counts of the kinds in expected are those."""
    deadline = time.monotonic() + timeout
    while True:
        got = learner.learned()
        if {k: got[k] for k in expected} == expected:
            return
        assert time.monotonic() < deadline, f"the learner has {got}, not {expected}"
        time.sleep(0.2)


def spool(root) -> list[str]:
    d = root.state_dir / "learn"
    return sorted(n.split(".")[0] for n in os.listdir(d)) if d.is_dir() else []


def test_moved_into_junk_is_spam_and_moved_back_is_ham_to_rspamd(tmp_path, learners):
    rspamd = learners["rspamd"]
    root = learn_root(tmp_path, **{"spam_learn.rspamd_controller": rspamd.controller})
    before = rspamd.learned()
    with running_server(root) as srv:
        assert send(srv.ports["smtp"], words("rspamd"))[0] == 250
        c = imap(srv.ports["imap"])
        c.select("INBOX")
        assert c.uid("MOVE", "1", "Junk")[0] == "OK"
        wait_learned(rspamd, {"spam": before["spam"] + 1, "ham": before["ham"]})
        c.select("Junk")
        assert c.uid("MOVE", "1", "INBOX")[0] == "OK"
        wait_learned(rspamd, {"ham": before["ham"] + 1})
        c.logout()
        counters = dict(srv.runtime.counters)
    assert counters["learned_spam"] == 1 and counters["learned_ham"] == 1
    assert spool(root) == []


def test_copy_and_expunge_and_the_junk_keywords_teach_spamd(tmp_path, learners):
    spamd = learners["spamd"]
    root = learn_root(tmp_path, **{"spam_learn.spamd": spamd.address})
    before = spamd.learned()
    with running_server(root) as srv:
        for n in range(2):
            assert send(srv.ports["smtp"], words(f"spamd {n}"))[0] == 250
        c = imap(srv.ports["imap"])
        c.select("INBOX")
        assert c.copy("1", "Junk")[0] == "OK"
        c.store("1", "+FLAGS", "(\\Deleted)")
        c.expunge()
        wait_learned(spamd, {"spam": before["spam"] + 1, "ham": before["ham"]})
        # Thunderbird's junk button: the $Junk keyword, here on the other INBOX message
        assert c.store("1", "+FLAGS", "($Junk)")[0] == "OK"
        wait_learned(spamd, {"spam": before["spam"] + 2, "ham": before["ham"]})
        # not junk, said in Junk: ham
        c.select("Junk")
        assert c.store("1", "+FLAGS", "($NotJunk)")[0] == "OK"
        wait_learned(spamd, {"spam": before["spam"] + 1, "ham": before["ham"] + 1})
        c.logout()


def test_append_into_junk_is_spam(tmp_path, learners):
    spamd = learners["spamd"]
    root = learn_root(tmp_path, **{"spam_learn.spamd": spamd.address})
    before = spamd.learned()
    with running_server(root) as srv:
        c = imap(srv.ports["imap"])
        assert c.append("Junk", None, None, words("appended"))[0] == "OK"
        wait_learned(spamd, {"spam": before["spam"] + 1, "ham": before["ham"]})
        c.logout()


def test_what_teaches_nothing_and_a_learner_that_comes_back_late(tmp_path, learners):
    """With the learner down, state/learn/ shows exactly what was put up; started, it
    learns it by itself."""
    late = LearningSpamd(tmp_path / "late")
    root = learn_root(tmp_path, **{"spam_learn.spamd": late.address})
    with running_server(root) as srv:
        for n in range(4):
            assert send(srv.ports["smtp"], words(f"late {n}"))[0] == 250
        c = imap(srv.ports["imap"])
        c.select("INBOX")
        assert c.store("1", "+FLAGS", "($NotJunk)")[0] == "OK"       # clients set it on arrival: nothing
        assert c.uid("MOVE", "1", "Archive")[0] == "OK"              # not Junk: nothing
        assert c.uid("MOVE", "2", "Junk")[0] == "OK"                 # spam
        c.select("Junk")
        assert c.uid("MOVE", "1", "Trash")[0] == "OK"                # deleting spam: nothing
        c.select("INBOX")
        assert c.uid("MOVE", "3", "Junk")[0] == "OK"                 # spam
        c.select("Junk")
        assert c.uid("MOVE", "2", "INBOX")[0] == "OK"                # ham
        time.sleep(1.5)                  # the worker tried (and failed) at least once
        assert spool(root) == ["ham", "spam", "spam"]
        assert srv.runtime.counters.get("learn_failed", 0) >= 1
        with late:
            wait_learned(late, {"spam": 1, "ham": 1})
            deadline = time.monotonic() + 10
            while spool(root):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert c.noop()[0] == "OK"
        c.logout()


def test_a_hung_or_garbage_learner_never_slows_nor_breaks_imap(tmp_path):
    hung, garbage = FakeScanner(None), FakeScanner(b'HTTP/1.1 500 Oops\r\n\r\n{"error": "/etc/shadow \x00\xff"}')
    try:
        for learner in (hung, garbage):
            root = learn_root(tmp_path / str(id(learner)), **{"spam_learn.rspamd_controller": learner.address,
                                                              "spam_learn.timeout_s": 30})
            with running_server(root) as srv:
                for n in range(3):
                    assert send(srv.ports["smtp"], words(f"hung {n}"))[0] == 250
                c = imap(srv.ports["imap"])
                c.select("INBOX")
                for uid in ("1", "2", "3"):
                    started = time.monotonic()
                    assert c.uid("MOVE", uid, "Junk")[0] == "OK"
                    assert time.monotonic() - started < 2
                time.sleep(1.5)
                other = imap(srv.ports["imap"])        # the server serves on
                assert other.select("Junk") == ("OK", [b"3"])
                other.logout()
                c.logout()
                assert spool(root) == ["spam"] * 3      # kept until a learner takes them
    finally:
        hung.close()
        garbage.close()


def test_two_serving_processes_put_up_what_one_worker_learns(tmp_path, learners):
    spamd = learners["spamd"]
    root = learn_root(tmp_path, **{"spam_learn.spamd": spamd.address, "server.processes": 2})
    before = spamd.learned()
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        for n in range(2):
            assert send(proc.ports["smtp"], words(f"two {n}"))[0] == 250
        one, two = imap_sessions_in_two_processes(root, proc.ports["imap"], BOB, PASSWORD)
        for c in (one, two):
            c.select("INBOX")
        assert one.uid("MOVE", "1", "Junk")[0] == "OK"
        assert two.uid("MOVE", "2", "Junk")[0] == "OK"
        wait_learned(spamd, {"spam": before["spam"] + 2, "ham": before["ham"]})
        for c in (one, two):
            c.logout()


def test_a_domain_s_own_junk_folder_is_where_its_spam_goes_and_what_is_learned(tmp_path, learners):
    rspamd = learners["rspamd"]
    root = learn_root(tmp_path, **{"spam_learn.rspamd_controller": rspamd.controller, "spam_scan.enabled": True,
                                   "spam_scan.rspamd": rspamd.address})
    for bad in ("INBOX", "a.b", ""):
        refused = mailctl(root, "domain", "set", "example.com", "--junk-folder", bad)
        assert refused.returncode != 0 and "junk_folder" in refused.stderr, refused.stderr
    done = mailctl(root, "domain", "set", "example.com", "--junk-folder", "Spam")
    assert done.returncode == 0, done.stderr
    before = rspamd.learned()
    with running_server(root) as srv:
        c = imap(srv.ports["imap"])
        assert c.create("Spam")[0] == "OK"                  # like Junk, it must exist (else INBOX)
        assert send(srv.ports["smtp"], gtube("gtube"))[0] == 250
        assert send(srv.ports["smtp"], words("spam folder"))[0] == 250
        assert c.select("Spam") == ("OK", [b"1"])          # the scanner's spam
        c.select("INBOX")
        assert c.uid("MOVE", "1", "Junk")[0] == "OK"        # not this domain's Junk: nothing
        time.sleep(1.5)
        assert rspamd.learned() == before and spool(root) == []
        c.select("Junk")
        assert c.uid("MOVE", "1", "Spam")[0] == "OK"
        wait_learned(rspamd, {"spam": before["spam"] + 1, "ham": before["ham"]})
        c.logout()
