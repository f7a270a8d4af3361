"""The acceptance pipeline's seam (engine/accept): a stage added through the pipeline's
public way (Pipeline.add, Pipeline.add_rcpt) decides what a real SMTP server answers and
what lands in the Maildir, with no change to protocol code; mail injected on this machine
passes the same stages."""
from __future__ import annotations

import email
import smtplib

import pytest

from engine import settings as settings_mod
from engine.accept import CONTINUE, AddHeaders, Defer, Discard, FileInto, Pipeline, Reject, Score, local
from engine.directory import Directory
from engine.maildir import Maildir
from helpers_server import make_root, running_server


def judge(arrival):
    """A test stage: what it answers depends on the Subject."""
    block = arrival.header_block()
    if b"Subject: defer" in block:
        return Defer("451 4.7.1 Deferred By The Test Stage")
    if b"Subject: reject" in block:
        return Reject("554 5.7.1 Rejected By The Test Stage", "test")
    if b"Subject: discard" in block:
        return Discard("the test stage")
    if b"Subject: junk" in block:
        return AddHeaders((b"X-Test-Stage: junk",)), FileInto("Junk")
    return AddHeaders((b"X-Test-Stage: seen",))


async def grey(check):
    """A RCPT-time test stage: one sender is told to come back later."""
    if check.sender == "grey@sender.org":
        return Defer("450 4.7.1 Greylisted By The Test Stage")
    return CONTINUE


def messages(root, folder: str) -> dict[str, email.message.Message]:
    box = Maildir.for_account(root, "example.com", "bob").folder(folder)
    return {m["Subject"]: m for m in (email.message_from_bytes(box.read(x)) for x in box.sync())}


def test_a_stage_added_to_a_running_server_answers_smtp_and_files_mail(tmp_path):
    root = make_root(tmp_path, accounts={"bob@example.com": "bob-password-1"}, settings={"queue.offline": True})
    with running_server(root) as srv:
        srv.runtime.pipeline.add(judge, before="deliver")
        srv.runtime.pipeline.add_rcpt(grey)
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
            s.ehlo()
            assert s.mail("grey@sender.org")[0] == 250
            assert s.rcpt("bob@example.com") == (450, b"4.7.1 Greylisted By The Test Stage")
            s.rset()
            for subject, expected in (("defer", (451, b"4.7.1 Deferred By The Test Stage")),
                                      ("reject", (554, b"5.7.1 Rejected By The Test Stage"))):
                assert s.mail("carol@sender.org")[0] == 250
                assert s.rcpt("bob@example.com")[0] == 250
                assert s.data(f"From: carol@sender.org\r\nSubject: {subject}\r\n\r\nhi\r\n".encode()) == expected
            for subject in ("plain", "junk", "discard"):
                assert s.sendmail("carol@sender.org", ["bob@example.com"],
                                  f"From: carol@sender.org\r\nSubject: {subject}\r\n\r\nhi\r\n".encode()) == {}
    inbox, junk = messages(root, "INBOX"), messages(root, "Junk")
    assert set(inbox) == {"plain"} and set(junk) == {"junk"}       # nothing deferred, rejected or discarded
    assert inbox["plain"]["X-Test-Stage"] == "seen" and junk["junk"]["X-Test-Stage"] == "junk"
    # the added line is in the sender's header block, below our Received line
    assert list(inbox["plain"].keys())[:2] == ["Return-Path", "Delivered-To"]
    assert inbox["plain"].keys().index("Received") < inbox["plain"].keys().index("X-Test-Stage")


def test_injected_mail_passes_the_same_stages(tmp_path):
    root = make_root(tmp_path, accounts={"bob@example.com": "bob-password-1"}, settings={"queue.offline": True})
    settings = settings_mod.load(root.config_file)
    pipeline = Pipeline()
    pipeline.add(judge, before="deliver")
    send = dict(recipients=["bob@example.com"], pipeline=pipeline, origin="test", wake=False)
    _, outcome = local.send_message(root, settings, Directory.load(root, settings),
                                    b"From: carol@sender.org\nSubject: junk\n\nhi\n", **send)
    assert outcome.delivered == ["bob@example.com"]
    with pytest.raises(Exception, match="Rejected By The Test Stage"):
        local.send_message(root, settings, Directory.load(root, settings),
                           b"From: carol@sender.org\nSubject: reject\n\nhi\n", **send)
    assert set(messages(root, "Junk")) == {"junk"} and not messages(root, "INBOX")
    assert messages(root, "Junk")["junk"]["X-Test-Stage"] == "junk"


def test_a_stage_goes_before_a_stage_named_in_the_list():
    pipeline = Pipeline()
    pipeline.add(judge, before="deliver")
    names = pipeline.names()
    assert names.index("judge") == names.index("deliver") - 1 and names[-1] == "bounce_refused"
    with pytest.raises(ValueError):
        pipeline.add(judge, before="no_such_stage")


async def listed_client(check):
    """A RCPT-time test stage scoring the client (as a DNSBL stage would), per recipient."""
    return Score(2.5, "test list: 127.0.0.2")


def total(arrival):
    """A test stage that writes the scores it sees into the message."""
    text = ";".join(f"{s.points}={s.reason}" for s in arrival.scores)
    return AddHeaders((b"X-Test-Scores: " + text.encode(),)), Score(1.0, "content")


def test_scores_from_rcpt_stages_count_once_per_transaction_and_reach_later_stages(tmp_path):
    root = make_root(tmp_path, accounts={"bob@example.com": "bob-password-1", "ann@example.com": "ann-password-1"},
                     settings={"queue.offline": True})
    seen = []
    with running_server(root) as srv:
        srv.runtime.pipeline.add_rcpt(listed_client)
        srv.runtime.pipeline.add(total, before="deliver")
        srv.runtime.pipeline.add(lambda a: seen.append(list(a.scores)) or CONTINUE, before="deliver")
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
            for n in range(2):      # a second transaction starts with no score
                assert s.sendmail("carol@sender.org", ["bob@example.com", "ann@example.com"],
                                  f"From: carol@sender.org\r\nSubject: {n}\r\n\r\nhi\r\n".encode()) == {}
    assert [m["X-Test-Scores"] for m in messages(root, "INBOX").values()] == ["2.5=test list: 127.0.0.2"] * 2
    assert seen == [[Score(2.5, "test list: 127.0.0.2"), Score(1.0, "content")]] * 2
