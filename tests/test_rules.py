"""`mailctl rule` (engine/sieve/rules.py): hMailServer-style rules written as Sieve. Each
criterion and action through `mailctl rule add` and a real SMTP delivery; `rule list`,
`remove` and `test`; global rules; a hand-written script beside them left alone; bad rules
refused with a clear message; Pigeonhole's sieve-test takes the same actions on what was
written."""
from __future__ import annotations

import datetime
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from engine.queue import Queue
from engine.sieve import scripts
from helpers_server import mailctl, make_root, running_server
from test_autoreply import HAND_WRITTEN, ok
from test_sieve_delivery import home, subjects
from test_sieve_vacation import ACCOUNT, deliver, replies

BOB_PASSWORD = "bob-password-1"


def message(subject: str, sender: str = "carol@far.example", extra: str = "", body: str = "hello",
            to: str = ACCOUNT, cc: str = "team@example.com") -> bytes:
    return (f"From: Carol <{sender}>\r\nTo: {to}\r\nCc: {cc}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(subject))}@far.example>\r\n{extra}\r\n{body}\r\n").encode()


def rules_root(tmp_path):
    return make_root(tmp_path, accounts={ACCOUNT: BOB_PASSWORD, "team@example.com": "team-password-1"},
                     settings={"queue.offline": True})


# (--if, message kwargs that match, message kwargs that do not)
CRITERIA = [
    ('from is "boss@far.example"', {"sender": "boss@far.example"}, {}),
    ('from contains "boss"', {"sender": "boss@far.example"}, {}),
    ('to contains "bob@"', {}, {"to": "someone@example.com"}),
    ('cc is "team@example.com"', {}, {"cc": "other@far.example"}),
    ('subject matches "Invoice *"', {"subject": "Invoice 42"}, {}),
    ('subject regex "^[0-9]{4}-report$"', {"subject": "2026-report"}, {}),
    ('subject not contains "hello"', {}, {"subject": "hello there"}),
    ('body contains "password reset"', {"body": "your password reset link"}, {}),
    ('size over 2K', {"body": "x" * 3000}, {}),
    ('size under 1K', {}, {"body": "y" * 2000}),
    ('header:X-Mailer contains "Bulk"', {"extra": "X-Mailer: BulkSender 2\r\n"}, {}),
    ('recipient is "bob@example.com"', {}, None),
]


@pytest.mark.parametrize("condition, hit, miss", CRITERIA, ids=[c[0].split()[0] + "-" + c[0].split()[1] for c in CRITERIA])
def test_each_criterion_through_smtp(tmp_path, condition, hit, miss):
    root = rules_root(tmp_path)
    ok(root, "rule", "add", ACCOUNT, "--if", condition, "--then", "move Matched")
    base = {"subject": "plain", "body": "hello"}
    with running_server(root) as srv:
        deliver(srv.ports["smtp"], "carol@far.example", message(**{**base, **hit, "subject": hit.get("subject", "hit")}))
        if miss is not None:
            deliver(srv.ports["smtp"], "carol@far.example", message(**{**base, **miss, "subject": miss.get("subject", "miss")}))
    assert subjects(root, "Matched") == [hit.get("subject", "hit")]
    if miss is not None:
        assert subjects(root, "INBOX") == [miss.get("subject", "miss")]


def test_each_action_through_smtp(tmp_path):
    root = rules_root(tmp_path)
    today = datetime.date.today()
    for cond, action in (('subject contains "archive"', "move Archive/%YEAR%-%MONTH%"),
                         ('subject contains "keep"', "copy Copies"),
                         ('subject contains "junk"', "delete"),
                         ('subject contains "fwd"', "forward dave@far.example"),
                         ('subject contains "away"', "forward-only erin@far.example"),
                         ('subject contains "star"', "flag \\Flagged"),
                         ('subject contains "ask"', "reply Thanks, I will answer soon."),
                         ('subject contains "tag"', "set-header X-Project Apollo 11")):
        ok(root, "rule", "add", ACCOUNT, "--if", cond, "--then", action)
    ok(root, "rule", "add", ACCOUNT, "--if", 'subject contains "first"', "--then", "move First", "--then", "stop")
    ok(root, "rule", "add", ACCOUNT, "--if", 'subject contains "first"', "--then", "move Never")
    ok(root, "rule", "add", ACCOUNT, "--any", "--if", 'subject contains "one"', "--if", 'subject contains "two"',
       "--then", "move Either")
    with running_server(root) as srv:
        for subject in ("archive this", "keep this", "junk this", "fwd this", "away this", "star this", "ask this", "tag this",
                        "first this", "two of them"):
            deliver(srv.ports["smtp"], "carol@far.example", message(subject))
    assert subjects(root, f"Archive/{today:%Y}-{today:%m}") == ["archive this"]
    assert subjects(root, "Copies") == ["keep this"] and subjects(root, "First") == ["first this"]
    assert subjects(root, "Either") == ["two of them"] and not (home(root) / ".Never").exists()
    assert sorted(subjects(root, "INBOX")) == ["ask this", "fwd this", "keep this", "star this", "tag this"]
    queued = {tuple(r.address for r in e.recipients): e for e in Queue(root).all()}
    assert set(queued) == {("dave@far.example",), ("erin@far.example",), ("carol@far.example",)}
    [(_, _, reply)] = [r for r in replies(root) if r[1] == ["carol@far.example"]]
    assert reply.get_payload().startswith("Thanks, I will answer soon.")
    from engine.maildir import Maildir
    box = Maildir.for_account(root, "example.com", "bob").folder("INBOX")
    [tagged] = [box.read(m) for m in box.sync() if b"tag this" in box.read(m)]
    assert b"\nX-Project: Apollo 11\n" in tagged
    flagged = [m for m in box.sync() if b"star this" in box.read(m)]
    assert len(flagged) == 1 and "\\Flagged" in flagged[0].flags


def test_list_remove_test_and_a_hand_written_script_left_alone(tmp_path):
    root = rules_root(tmp_path)
    scripts.put_script(home(root), "mine", HAND_WRITTEN)
    scripts.activate(home(root), "mine")
    ok(root, "rule", "add", ACCOUNT, "--if", 'subject contains "invoice"', "--then", "move Finance")
    ok(root, "rule", "add", ACCOUNT, "--if", 'from is "boss@far.example"', "--then", "flag \\Flagged")
    assert ok(root, "rule", "list", ACCOUNT).splitlines() == [
        "1. if subject contains 'invoice': move 'Finance'", "2. if from is 'boss@far.example': flag '\\\\Flagged'"]
    sample = tmp_path / "sample.eml"
    sample.write_bytes(message("invoice 7 report", sender="boss@far.example"))
    tried = json.loads(ok(root, "rule", "test", ACCOUNT, str(sample), "--json"))
    # the rules first, then the hand-written script (its "report" rule)
    assert [(a["action"], a["argument"]) for a in tried["actions"]] == [("fileinto", "Finance"), ("fileinto", "Reports")]
    assert tried["implicit_keep"] is False and tried["error"] == ""
    ok(root, "rule", "remove", ACCOUNT, "1")
    assert len(json.loads(ok(root, "rule", "list", ACCOUNT, "--json"))) == 1
    ok(root, "rule", "remove", ACCOUNT, "1")
    assert scripts.read_script(home(root), "mine") == HAND_WRITTEN


def test_global_rules_run_before_everyone_s_own(tmp_path):
    root = rules_root(tmp_path)
    ok(root, "rule", "add", "--global", "--if", 'header:X-Priority is "1"', "--then", "move Junk")
    assert (root.path / "sieve" / "before.d" / "mailctl-rules.sieve").exists()
    with running_server(root) as srv:
        deliver(srv.ports["smtp"], "carol@far.example", message("flagged", extra="X-Priority: 1\r\n",
                                                                to="bob@example.com, team@example.com"))
    assert subjects(root, "Junk") == ["flagged"]
    ok(root, "rule", "remove", "--global", "1")
    assert ok(root, "rule", "list", "--global").strip() == "the server: no rules"


@pytest.mark.parametrize("args, says", [
    (["--if", "subject", "--then", "move X"], "FIELD OPERATOR VALUE"),
    (["--if", 'subject likes "x"', "--then", "move X"], "operator"),
    (["--if", 'size over "big"', "--then", "move X"], "a size"),
    (["--if", 'subject regex "(a+)+++"', "--then", "move X"], "--if"),
    (["--if", 'subject is "x"', "--then", "move ../../etc"], "folder name"),
    (["--if", 'subject is "x"', "--then", "forward not-an-address"], "not an address"),
    (["--if", 'subject is "x"', "--then", "set-header Received x"], "may set"),
    (["--if", 'subject is "x', "--then", "move X"], "quotation"),
    (["--then", "move X"], "at least one --if"),
])
def test_bad_rules_are_refused_clearly(tmp_path, args, says):
    root = rules_root(tmp_path)
    done = mailctl(root, "rule", "add", ACCOUNT, *args)
    assert done.returncode != 0 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert scripts.active_name(home(root)) is None


def test_pigeonhole_takes_the_same_actions_on_the_rules_written(tmp_path):
    from tests.sieve_pigeonhole import SIEVE_TEST, Case, dovecot_config, ours, pigeonhole
    if not SIEVE_TEST:
        pytest.skip("sieve-test is not installed (Debian package dovecot-sieve)")
    root = rules_root(tmp_path)
    for cond, action in (('subject matches "Invoice *"', "move Finance/%YEAR%"), ('from contains "alice"', "flag \\Seen"),
                         ('size over 1M', "delete"), ('header:List-Id contains "news"', "copy News")):
        ok(root, "rule", "add", ACCOUNT, "--if", cond, "--then", action)
    text = scripts.read_script(home(root), "mailctl")
    work = Path(tempfile.mkdtemp(prefix="mailctl-rules-"))
    try:
        case = Case("rules", text, recipient="bob+work@example.org")
        theirs = pigeonhole(case, work, dovecot_config(work))
        assert theirs == ours(case) and any(a.startswith("fileinto Finance/") for a in theirs), theirs
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_check_message_shows_what_the_recipient_s_sieve_would_do(tmp_path):
    root = rules_root(tmp_path)
    ok(root, "rule", "add", ACCOUNT, "--if", 'subject contains "invoice"', "--then", "move Finance",
       "--then", "flag \\Seen")
    sample = tmp_path / "invoice.eml"
    sample.write_bytes(message("invoice 12"))
    args = ["check", "message", str(sample), "--ip", "127.0.0.1", "--from", "carol@far.example", "--to", ACCOUNT,
            "--to", "team@example.com"]
    found = json.loads(ok(root, *args, "--json"))
    by_address = {r["address"]: r["sieve"] for r in found["recipients"]}
    assert by_address[ACCOUNT][ACCOUNT]["actions"] == [{"action": "fileinto", "argument": "Finance", "flags": ["\\Seen"]}]
    assert by_address["team@example.com"] == {"team@example.com": {"actions": [], "implicit_keep": True, "error": ""}}
    assert f"sieve ({ACCOUNT}): fileinto Finance" in ok(root, *args)
    assert not (root.state_dir / "duplicates").exists() and Queue(root).all() == []     # nothing written


def test_a_hand_broken_section_is_a_clear_error(tmp_path):
    root = rules_root(tmp_path)
    ok(root, "rule", "add", ACCOUNT, "--if", 'subject contains "x"', "--then", "move X")
    ok(root, "autoreply", "set", ACCOUNT)
    text = scripts.read_script(home(root), "mailctl")
    scripts.put_script(home(root), "mailctl", text.replace('# mailctl-rule {"if"', '# mailctl-rule {"if" oops')
                       .replace('# mailctl-autoreply {"subject"', '# mailctl-autoreply {"subject" oops'))
    for args in (("rule", "list", ACCOUNT), ("autoreply", "show", ACCOUNT)):
        done = mailctl(root, *args)
        assert done.returncode == 1 and "edited by hand" in done.stderr and "Traceback" not in done.stderr, done.stderr
