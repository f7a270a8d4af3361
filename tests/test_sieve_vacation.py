"""The vacation action (RFC 5230, RFC 3834): which messages get an answer
(engine/sieve/vacation.py), and the reply itself through real SMTP delivery
(engine/accept/autoreply.py): queued with a null sender once per sender per period, the
headers RFC 3834 asks for, exactly one reply when two serving processes take two messages
from one sender at once."""
from __future__ import annotations

import email
import email.policy

import pytest

from engine.queue import Queue
from engine.sieve import scripts
from helpers_process import data_at_once, smtp_sessions_in_two_processes
from helpers_server import make_root, running_server, serve_process, wait_for_processes
from test_sieve_delivery import home

from engine.sieve.interp import Script
from engine.sieve.message import SieveMessage
from engine.sieve.vacation import reply_due

BOB = "bob@example.org"


def message(extra: str = "", sender: str = "alice@example.com", to: str = BOB) -> SieveMessage:
    raw = f"From: alice@example.com\r\nTo: {to}\r\n{extra}Subject: hi\r\n\r\nhello\r\n".encode()
    return SieveMessage(raw, sender, BOB)


def test_a_personal_message_gets_a_reply():
    assert reply_due(message(), [BOB]) == (True, "")
    assert reply_due(message(to="Bob <BOB@example.org>"), [BOB])[0]
    assert reply_due(message(to="b@example.org"), [BOB, "b@example.org"])[0]     # :addresses


@pytest.mark.parametrize("kwargs, why", [
    ({"sender": ""}, "null sender"),
    ({"sender": "MAILER-DAEMON@example.net"}, "automatic sender"),
    ({"sender": "owner-list@example.net"}, "automatic sender"),
    ({"sender": "list-request@example.net"}, "automatic sender"),
    ({"sender": BOB}, "sender is the user"),
    ({"extra": "Auto-Submitted: auto-replied\r\n"}, "auto-submitted"),
    ({"extra": "List-Id: <x.example.net>\r\n"}, "mailing list"),
    ({"extra": "Precedence: bulk\r\n"}, "bulk precedence"),
    ({"extra": "X-Auto-Response-Suppress: All\r\n"}, "X-Auto-Response-Suppress"),
    ({"to": "others@example.net"}, "the user is not named in To/Cc/Bcc"),
])
def test_no_reply_to_automatic_list_or_unaddressed_mail(kwargs, why):
    assert reply_due(message(**kwargs), [BOB]) == (False, why)


def test_the_action_is_recorded_once_with_its_period():
    result = Script('require "vacation";\nvacation :days 3 :subject "Away" "Back Monday";\n').run(message())
    (action,) = [a for a in result.actions if a.kind == "vacation"]
    assert action.arg == "Back Monday" and action.details["seconds"] == 3 * 86400
    assert result.implicit_keep
    assert "duplicate" in Script('require "vacation";\nvacation "a";\nvacation "b";\n').run(message()).error


ACCOUNT = "bob@example.com"
AWAY = 'require "vacation";\nvacation :days 2 :addresses ["robert@example.com"] "I am away until Monday.\nBob";\n'


def away_root(tmp_path, script: str = AWAY, **settings):
    root = make_root(tmp_path, accounts={ACCOUNT: "bob-password-1"}, settings={"queue.offline": True, **settings})
    scripts.put_script(home(root), "away", script)
    scripts.activate(home(root), "away")
    return root


def mail(sender: str, subject: str = "lunch", extra: str = "", to: str = ACCOUNT) -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@x.example>"
            f"\r\n{extra}\r\nhello\r\n").encode()


def deliver(port: int, sender: str, data: bytes) -> None:
    import smtplib
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        assert s.sendmail(sender, [ACCOUNT], data) == {}


def replies(root) -> list[tuple[str, list[str], email.message.Message]]:
    q = Queue(root)
    out = []
    for env in q.all():
        msg = email.message_from_bytes(q.body_path(env.id).read_bytes(), policy=email.policy.compat32)
        out.append((env.sender, [r.address for r in env.recipients], msg))
    return out


def test_a_reply_goes_once_per_sender_with_rfc_3834_s_headers(tmp_path):
    root = away_root(tmp_path)
    with running_server(root) as srv:
        port = srv.ports["smtp"]
        deliver(port, "carol@far.example", mail("carol@far.example", "lunch on friday"))
        [(sender, to, reply)] = replies(root)
        assert sender == "" and to == ["carol@far.example"]                # a null envelope sender
        assert reply["From"] == ACCOUNT and reply["To"] == "<carol@far.example>"
        assert reply["Subject"] == "Auto: lunch on friday"
        assert reply["Auto-Submitted"].startswith("auto-replied")
        assert reply["In-Reply-To"] == "<lunch.on.friday@x.example>" == reply["References"]
        assert reply.get_payload() == "I am away until Monday.\r\nBob\r\n"
        # once per sender per period; another sender gets one; :addresses counts as the user
        deliver(port, "carol@far.example", mail("carol@far.example", "again"))
        deliver(port, "dave@far.example", mail("dave@far.example", "hello", to="robert@example.com, x@y.example"))
        assert sorted(to[0] for _, to, _ in replies(root)) == ["carol@far.example", "dave@far.example"]
        # never to lists, bulk, automatic replies, mail not naming the user, the null sender
        for sender, extra, to in (("news@far.example", "List-Id: <news.far.example>\r\n", ACCOUNT),
                                  ("ads@far.example", "Precedence: bulk\r\n", ACCOUNT),
                                  ("robot@far.example", "Auto-Submitted: auto-replied\r\n", ACCOUNT),
                                  ("erin@far.example", "", "others@example.com"),
                                  ("", "", ACCOUNT)):
            deliver(port, sender, mail(sender or "daemon@far.example", "x", extra, to))
        assert len(replies(root)) == 2
    assert sorted(subjects_in(root)) == sorted(["lunch on friday", "again", "hello", "x", "x", "x", "x", "x"])


def subjects_in(root) -> list[str]:
    from engine.maildir import Maildir
    box = Maildir.for_account(root, "example.com", "bob").folder("INBOX")
    return [email.message_from_bytes(box.read(x))["Subject"] for x in box.sync()]


def test_the_period_ends_and_a_changed_text_answers_again(tmp_path):
    import os
    import time
    root = away_root(tmp_path, 'require "vacation";\nvacation :subject "Away" "Gone.";\n')
    with running_server(root) as srv:
        port = srv.ports["smtp"]
        deliver(port, "carol@far.example", mail("carol@far.example", "one"))
        assert [r["Subject"] for _, _, r in replies(root)] == ["Away"]
        for record in (root.state_dir / "vacation").iterdir():       # the period (7 days) is over
            os.utime(record, (time.time(), time.time() - 1))
        deliver(port, "carol@far.example", mail("carol@far.example", "two"))
        assert len(replies(root)) == 2
        scripts.put_script(home(root), "away", 'require "vacation";\nvacation :subject "Away" "Gone for good.";\n')
        deliver(port, "carol@far.example", mail("carol@far.example", "three"))
        assert len(replies(root)) == 3
        deliver(port, "carol@far.example", mail("carol@far.example", "four"))
        assert len(replies(root)) == 3


def test_two_serving_processes_send_one_reply_to_one_sender(tmp_path):
    root = away_root(tmp_path, **{"server.processes": 2})
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        sessions = list(smtp_sessions_in_two_processes(proc.ports["smtp"], proc.proc.pid).values())
        codes = data_at_once(sessions, "carol@far.example", ACCOUNT, [mail("carol@far.example", f"at once {n}")
                                                                     for n in range(2)])
        assert codes == [250, 250]
    assert [to for _, to, _ in replies(root)] == [["carol@far.example"]]


def test_a_hostile_subject_or_from_cannot_add_header_lines():
    from engine.accept.autoreply import compose
    from engine.sieve.actions import Action
    action = Action("vacation", "Gone.", details={"subject": "Away\r\nBcc: victim@x.example",
                                                  "from": "Bob <bob@example.com>\r\nX-Evil: 1"})
    raw = compose(message(), ACCOUNT, action)
    reply = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert reply["Bcc"] is None and reply["X-Evil"] is None and reply["Subject"].startswith("Away")
    assert raw.count(b"\r\n\r\n") == 1 and raw.endswith(b"Gone.\r\n")
    unicode = compose(message(), ACCOUNT, Action("vacation", "Parti.", details={"subject": "Absent été"}))
    assert email.message_from_bytes(unicode)["Subject"].startswith("=?utf-8?")


def test_a_notify_action_queues_a_notice_and_none_about_automatic_mail(tmp_path):
    root = away_root(tmp_path, 'require ["enotify", "variables"];\n'
                               'if header :matches "subject" "*" { set "s" "${1}"; }\n'
                               'notify :importance "1" :message "Mail: ${s}" "mailto:bob@mobile.example?cc=pager@mobile.example";\n')
    with running_server(root) as srv:
        port = srv.ports["smtp"]
        deliver(port, "carol@far.example", mail("carol@far.example", "urgent thing"))
        deliver(port, "robot@far.example", mail("robot@far.example", "robot", "Auto-Submitted: auto-generated\r\n"))
    [(sender, to, notice)] = replies(root)
    assert sender == "" and to == ["bob@mobile.example", "pager@mobile.example"]
    assert notice["Subject"] == "Mail: urgent thing" and notice["Auto-Submitted"] == "auto-notified"
    assert notice["From"] == ACCOUNT and notice["Cc"] == "<pager@mobile.example>" and notice["X-Priority"].startswith("1")
    assert "carol@far.example" in notice.get_payload()
