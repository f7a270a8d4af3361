"""`mailctl autoreply` (engine/sieve/outofoffice.py): the out-of-office reply written as a
Sieve vacation action in a generated section of the account's active script. Through real
SMTP delivery: one reply per sender, "Re: <subject>" by default, none to lists or
MAILER-DAEMON, none outside the dates; a hand-written script beside it keeps working and
comes back unchanged after `off`; Pigeonhole's sieve-test takes the same actions on the
script it wrote."""
from __future__ import annotations

import datetime
import email
import email.policy
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from engine.sieve import scripts
from helpers_server import mailctl, make_root, running_server
from test_sieve_delivery import home, subjects
from test_sieve_vacation import ACCOUNT, deliver, mail, replies

HAND_WRITTEN = 'require ["fileinto", "mailbox"];\n# my own rules\nif header :contains "subject" "report" {\n' \
               '  fileinto :create "Reports";\n  stop;\n}\n'


def ok(root, *args: str) -> str:
    done = mailctl(root, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def day(offset: int) -> str:
    return (datetime.date.today() + datetime.timedelta(days=offset)).isoformat()


def test_set_show_and_the_replies_it_sends(tmp_path):
    root = make_root(tmp_path, accounts={ACCOUNT: "bob-password-1"}, settings={"queue.offline": True})
    body = tmp_path / "away.txt"
    body.write_text("Back on Monday, %NAME%.\nCosts ${100} though.\n")
    ok(root, "autoreply", "set", ACCOUNT, "--body-file", str(body), "--days", "3")
    shown = json.loads(ok(root, "autoreply", "show", ACCOUNT, "--json"))
    assert shown["enabled"] and shown["days"] == 3 and shown["subject"] == "Re: %SUBJECT%"
    assert scripts.active_name(home(root)) == "mailctl"
    with running_server(root) as srv:
        port = srv.ports["smtp"]
        deliver(port, "carol@far.example", mail("carol@far.example", "lunch"))
        deliver(port, "carol@far.example", mail("carol@far.example", "lunch again"))
        deliver(port, "news@far.example", mail("news@far.example", "news", "List-Id: <n.far.example>\r\n"))
        deliver(port, "MAILER-DAEMON@far.example", mail("MAILER-DAEMON@far.example", "bounce"))
    [(sender, to, reply)] = replies(root)
    assert sender == "" and to == ["carol@far.example"] and reply["Subject"] == "Re: lunch"
    assert reply.get_payload() == "Back on Monday, bob@example.com.\r\nCosts ${100} though.\r\n"
    assert reply["Auto-Submitted"].startswith("auto-replied") and reply["In-Reply-To"] == "<lunch@x.example>"
    assert sorted(subjects(root, "INBOX")) == ["bounce", "lunch", "lunch again", "news"]
    ok(root, "autoreply", "off", ACCOUNT)
    assert json.loads(ok(root, "autoreply", "show", ACCOUNT, "--json"))["enabled"] is False


@pytest.mark.parametrize("start, until, answers", [(1, 0, False), (-5, -1, False), (-1, 1, True), (0, 0, True)])
def test_only_between_its_dates(tmp_path, start, until, answers):
    root = make_root(tmp_path, accounts={ACCOUNT: "bob-password-1"}, settings={"queue.offline": True})
    args = ["--from", day(start)] + (["--until", day(until)] if until or start == 0 else [])
    ok(root, "autoreply", "set", ACCOUNT, "--subject", "Away: %SUBJECT%", *args)
    with running_server(root) as srv:
        deliver(srv.ports["smtp"], "carol@far.example", mail("carol@far.example", "dates"))
    assert [r["Subject"] for _, _, r in replies(root)] == (["Away: dates"] if answers else [])


def test_a_hand_written_script_keeps_working_and_comes_back_unchanged(tmp_path):
    root = make_root(tmp_path, accounts={ACCOUNT: "bob-password-1"}, settings={"queue.offline": True})
    scripts.put_script(home(root), "mine", HAND_WRITTEN)
    scripts.activate(home(root), "mine")
    html = tmp_path / "away.html"
    html.write_text("<p>Back on <b>Monday</b>.</p>")
    ok(root, "autoreply", "set", ACCOUNT, "--html-file", str(html))
    text = scripts.read_script(home(root), "mine")
    assert "# my own rules" in text and text.index("BEGIN mailctl autoreply: requires") < text.index("require [\"fileinto\"")
    with running_server(root) as srv:
        deliver(srv.ports["smtp"], "carol@far.example", mail("carol@far.example", "weekly report"))
    assert subjects(root, "Reports") == ["weekly report"]             # the user's rule, after the reply
    [(_, _, reply)] = replies(root)
    assert reply.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in reply.get_payload()] == ["text/plain", "text/html"]
    assert "<b>Monday</b>" in reply.get_payload()[1].get_payload()
    ok(root, "autoreply", "off", ACCOUNT)
    assert scripts.read_script(home(root), "mine") == HAND_WRITTEN and scripts.active_name(home(root)) == "mine"


def test_bad_arguments_are_refused_and_a_broken_script_is_not_touched(tmp_path):
    root = make_root(tmp_path, accounts={ACCOUNT: "bob-password-1"})
    for args in (["--from", "2026-13-01"], ["--from", "2026-12-10", "--until", "2026-12-01"], ["--days", "0"],
                 ["--subject", "two\nlines"]):
        done = mailctl(root, "autoreply", "set", ACCOUNT, *args)
        assert done.returncode == 1 and done.stderr.startswith("mailctl: ") and "Traceback" not in done.stderr
    assert mailctl(root, "autoreply", "set", "nobody@example.com").returncode == 1
    folder = home(root) / "sieve"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.sieve").write_text("if {\n")
    scripts.activate(home(root), "broken")
    done = mailctl(root, "autoreply", "set", ACCOUNT)
    assert done.returncode == 1 and "line 1" in done.stderr and str(tmp_path) not in done.stderr
    assert (folder / "broken.sieve").read_text() == "if {\n"


def test_pigeonhole_takes_the_same_actions_on_the_script_it_wrote(tmp_path):
    from tests.sieve_pigeonhole import SIEVE_TEST, Case, dovecot_config, ours, pigeonhole
    if not SIEVE_TEST:
        pytest.skip("sieve-test is not installed (Debian package dovecot-sieve)")
    root = make_root(tmp_path, accounts={ACCOUNT: "bob-password-1"})
    scripts.put_script(home(root), "mine", HAND_WRITTEN)
    scripts.activate(home(root), "mine")
    ok(root, "autoreply", "set", ACCOUNT, "--from", day(-1), "--until", day(1), "--subject", "Off: %SUBJECT%")
    text = scripts.read_script(home(root), "mine")
    work = Path(tempfile.mkdtemp(prefix="mailctl-autoreply-"))
    try:
        conf = dovecot_config(work)
        case = Case("autoreply", text, recipient="bob+work@example.org")
        theirs = pigeonhole(case, work, conf)
        assert theirs == ours(case) and any(a.startswith("vacation") and "Off: Invoice 42" in a for a in theirs), theirs
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_root_s_template_and_the_reply_reaching_an_external_server(tmp_path):
    """Without --body-file the root's templates/autoreply.txt (written by `mailctl init`) is
    the text; the queued reply goes out to the sender's server (a sink on 127.0.0.2, the MX
    of far.example in a loopback DNS server) with a null MAIL FROM and RFC 3834's fields."""
    from dnsserver import DNSServer
    from helpers_queue import Harness, base_settings, configure
    from sinks import Sink
    root = make_root(tmp_path, accounts={ACCOUNT: "bob-password-1"}, settings={"queue.offline": True})
    template = root.path / "templates" / "autoreply.txt"
    assert "I am away" in template.read_text()
    template.write_text("Out until Monday, %NAME%.\n")
    ok(root, "autoreply", "set", ACCOUNT)
    with running_server(root) as srv:
        deliver(srv.ports["smtp"], "carol@far.example", mail("carol@far.example", "status report"))
    dns_server = DNSServer({"far.example": {"MX": [(10, "mx.far.example")]}, "mx.far.example": {"A": ["127.0.0.2"]}})
    sink = Sink("127.0.0.2")
    try:
        configure(root, {**base_settings(dns_server, sink.port), "queue.offline": False})
        h = Harness(root)
        try:
            h.run()
        finally:
            h.close()
    finally:
        sink.stop()
        dns_server.close()
    [got] = sink.messages
    reply = email.message_from_bytes(got.data, policy=email.policy.compat32)
    assert got.sender in ("", "<>") and got.recipients == ["carol@far.example"]      # MAIL FROM:<>
    assert reply["Subject"] == "Re: status report" and reply["Auto-Submitted"].startswith("auto-replied")
    assert reply["In-Reply-To"] == "<status.report@x.example>" and reply.get_payload() == "Out until Monday, bob@example.com.\r\n"
