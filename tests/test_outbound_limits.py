"""Outbound sending limits per account (engine/accept/sendlimits.py, engine/sendcounts.py):
an authenticated account past its messages or distinct external recipients per hour or
day gets 451 4.7.1, and only that account; mail to our own domains never counts; a
daily limit blocks the account until `mailctl account unblock`. Real servers on
127.0.0.1, smtplib with AUTH on the submission port."""
from __future__ import annotations

import json
import smtplib

import pytest

from engine.queue import Queue
from helpers_server import mailctl, make_root, running_server

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
PASSWORDS = {ALICE: "alice-password-1", BOB: "bob-password-1", CAROL: "carol-password-1"}
BASE = {"queue.offline": True, "auth.allow_plaintext": True, "send_limits.messages_per_hour": 0,
        "send_limits.messages_per_day": 0, "send_limits.recipients_per_hour": 0,
        "send_limits.recipients_per_day": 0}


def root_with(tmp_path, **limits):
    return make_root(tmp_path, accounts=PASSWORDS,
                     settings={**BASE, **{f"send_limits.{k}": v for k, v in limits.items()}})


def login(port: int, user: str) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    s.ehlo("client.example")
    s.login(user, PASSWORDS[user])
    return s


def message(user: str, n: int = 0) -> bytes:
    return f"From: <{user}>\r\nSubject: note {n}\r\n\r\nhello {n}\r\n".encode()


def send(s: smtplib.SMTP, user: str, recipients: list[str], n: int = 0) -> tuple[int, str]:
    """One transaction: (code, text) of the first refusal (MAIL, every RCPT, or DATA), or
    (250, '') when accepted for every recipient."""
    s.rset()
    code, text = s.mail(user)
    if code != 250:
        return code, text.decode()
    refused = []
    for r in recipients:
        code, text = s.rcpt(r)
        if code != 250:
            refused.append((code, text.decode()))
    if len(refused) == len(recipients):
        return refused[0]
    code, text = s.data(message(user, n))
    if code != 250:
        return code, text.decode()
    return refused[0] if refused else (250, "")


def age(root, minutes: float) -> None:
    """Move every count of state/sendlimits/ `minutes` into the past (the files' own
    clock, documented in engine/sendcounts.py), instead of waiting an hour."""
    for f in (root.state_dir / "sendlimits").iterdir():
        if f.name.startswith("."):
            continue
        data = json.loads(f.read_text())
        data["messages"] = [[m - int(minutes), n] for m, n in data["messages"]]
        data["recipients"] = {k: m - int(minutes) for k, m in data["recipients"].items()}
        if data["blocked"]:
            data["blocked"] -= minutes * 60
        tmp = f.with_name(".aged")
        tmp.write_text(json.dumps(data))
        tmp.replace(f)


def queued_from(root, user: str) -> int:
    return sum(1 for e in Queue(root).all() if e.auth_user == user)


def show(root, user: str) -> dict:
    out = mailctl(root, "account", "show", user, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["sending"]


def test_the_message_past_the_hourly_limit_gets_451_for_that_account_only(tmp_path):
    root = root_with(tmp_path, messages_per_hour=3)
    with running_server(root) as srv:
        port = srv.ports["submission"]
        with login(port, ALICE) as alice, login(port, BOB) as bob:
            for n in range(3):
                assert send(alice, ALICE, [f"friend{n}@remote.example"], n) == (250, "")
            code, text = send(alice, ALICE, ["friend9@remote.example"], 9)
            assert (code, text) == (451, f"4.7.1 {ALICE}: sending limit of 3 messages per hour reached, "
                                         f"try again later")
            # another account still sends; alice still writes to our own domain (never counted)
            assert send(bob, BOB, ["friend0@remote.example"]) == (250, "")
            assert send(alice, ALICE, [BOB, CAROL]) == (250, "")
            # a transaction with both: the local recipient accepted, the external one refused
            assert send(alice, ALICE, [CAROL, "friend9@remote.example"]) == \
                (451, f"4.7.1 {ALICE}: sending limit of 3 messages per hour reached, try again later")
        assert srv.runtime.counters.get("send_limit_deferred") == 2
    assert queued_from(root, ALICE) == 3 and queued_from(root, BOB) == 1
    counts = show(root, ALICE)
    assert (counts["messages_last_hour"], counts["messages_last_day"], counts["blocked"]) == (3, 3, False)
    assert counts["limits"]["messages_per_hour"] == 3


def test_distinct_recipients_per_hour(tmp_path):
    root = root_with(tmp_path, recipients_per_hour=3)
    with running_server(root) as srv, login(srv.ports["submission"], ALICE) as alice:
        assert send(alice, ALICE, ["a@remote.example", "b@remote.example"]) == (250, "")
        assert send(alice, ALICE, ["A@remote.example"]) == (250, "")      # the same one again: not new
        assert send(alice, ALICE, ["c@remote.example", BOB]) == (250, "")
        # d is a fourth: refused; a (known) in the same transaction still goes
        assert _rcpts(alice, ALICE, ["a@remote.example", "d@remote.example", "a@remote.example"]) == [250, 451, 250]
        assert alice.data(message(ALICE))[0] == 250
        code, text = send(alice, ALICE, ["d@remote.example"])
        assert (code, text) == (451, f"4.7.1 {ALICE}: sending limit of 3 recipients per hour reached, "
                                     f"try again later")
    age(root, 61)
    with running_server(root) as srv, login(srv.ports["submission"], ALICE) as alice:
        refused = _rcpts(alice, ALICE, ["e@remote.example", "f@remote.example", "g@remote.example",
                                        "h@remote.example"])
        assert refused == [250, 250, 250, 451]          # new ones of one transaction add up
    assert show(root, ALICE)["recipients_last_day"] == 3         # e, f, g were never sent (no DATA)


def _rcpts(s: smtplib.SMTP, user: str, recipients: list[str]) -> list[int]:
    s.rset()
    assert s.mail(user)[0] == 250
    return [s.rcpt(r)[0] for r in recipients]


def test_the_hour_passes_but_the_day_holds(tmp_path):
    root = root_with(tmp_path, messages_per_hour=2, messages_per_day=3, unblock_after_hours=0)
    with running_server(root) as srv, login(srv.ports["submission"], ALICE) as alice:
        assert send(alice, ALICE, ["x@remote.example"]) == (250, "")
        assert send(alice, ALICE, ["x@remote.example"]) == (250, "")
        assert send(alice, ALICE, ["x@remote.example"])[0] == 451
        age(root, 59)
        assert send(alice, ALICE, ["x@remote.example"])[0] == 451          # still inside the hour
        age(root, 2)
        assert send(alice, ALICE, ["x@remote.example"]) == (250, "")       # the hour passed
        code, text = send(alice, ALICE, ["x@remote.example"])              # the day's fourth
        assert (code, text) == (451, f"4.7.1 {ALICE}: sending limit of 3 messages per day reached, "
                                     f"try again later")
        assert srv.runtime.counters.get("send_limit_blocked") == 1
        # blocked: refused with the block's text, even after a day, until unblocked
        age(root, 25 * 60)
        code, text = send(alice, ALICE, ["x@remote.example"])
        assert code == 451 and "sending to external recipients blocked (sending limit of 3 messages per day" \
            in text and "ask your administrator" in text
        assert send(alice, ALICE, [BOB]) == (250, "")                      # local mail still goes
        state = show(root, ALICE)
        assert state["blocked"] is True and state["blocked_why"] == "sending limit of 3 messages per day"
        out = mailctl(root, "account", "unblock", ALICE)
        assert out.returncode == 0 and out.stdout == f"{ALICE} unblocked; its sending counts start afresh\n"
        assert send(alice, ALICE, ["x@remote.example"]) == (250, "")
        assert show(root, ALICE)["blocked"] is False


def test_a_block_lifts_by_itself_after_unblock_after_hours(tmp_path):
    root = root_with(tmp_path, messages_per_day=1, unblock_after_hours=2)
    with running_server(root) as srv, login(srv.ports["submission"], ALICE) as alice:
        assert send(alice, ALICE, ["x@remote.example"]) == (250, "")
        assert send(alice, ALICE, ["x@remote.example"])[0] == 451
        assert show(root, ALICE)["blocked"] is True
        age(root, 119)
        assert "blocked" in send(alice, ALICE, ["x@remote.example"])[1]
        age(root, 2)
        assert show(root, ALICE)["blocked"] is False
        # the block lifted, but the day still holds the first message: refused, blocked anew
        assert send(alice, ALICE, ["y@remote.example"])[1] == \
            f"4.7.1 {ALICE}: sending limit of 1 messages per day reached, try again later"
        assert show(root, ALICE)["blocked"] is True
        age(root, 24 * 60)
        assert send(alice, ALICE, ["y@remote.example"]) == (250, "")


def test_a_refused_message_does_not_count(tmp_path):
    root = root_with(tmp_path, messages_per_hour=1, recipients_per_hour=1)
    with running_server(root) as srv, login(srv.ports["submission"], ALICE) as alice:
        alice.rset()
        alice.mail(ALICE)
        assert alice.rcpt("x@remote.example")[0] == 250
        # refused after DATA: a From: alice does not own (550): neither message nor recipient counts
        code, _ = alice.data(b"From: <ceo@remote.example>\r\nSubject: forged\r\n\r\nx\r\n")
        assert code == 550
        alice.rset()
        alice.mail(ALICE)
        assert alice.rcpt("y@remote.example")[0] == 250
        alice.rset()                                  # abandoned before DATA: not counted either
        assert send(alice, ALICE, ["x@remote.example"]) == (250, "")
        assert send(alice, ALICE, ["x@remote.example"])[0] == 451
    assert queued_from(root, ALICE) == 1


def test_per_account_limits_override_the_defaults(tmp_path):
    root = root_with(tmp_path, messages_per_hour=1)
    out = mailctl(root, "account", "limits", BOB, "--messages-per-hour", "3")
    assert out.returncode == 0, out.stderr
    out = mailctl(root, "account", "limits", CAROL, "--messages-per-hour", "0")       # no limit
    assert out.returncode == 0, out.stderr
    with running_server(root) as srv:
        port = srv.ports["submission"]
        with login(port, ALICE) as alice, login(port, BOB) as bob, login(port, CAROL) as carol:
            assert [send(alice, ALICE, ["x@remote.example"])[0] for _ in range(2)] == [250, 451]
            assert [send(bob, BOB, ["x@remote.example"])[0] for _ in range(4)] == [250, 250, 250, 451]
            assert [send(carol, CAROL, ["x@remote.example"])[0] for _ in range(5)] == [250] * 5


@pytest.mark.parametrize("enabled", [False])
def test_off_means_off(tmp_path, enabled):
    root = root_with(tmp_path, enabled=enabled, messages_per_hour=1, recipients_per_hour=1)
    with running_server(root) as srv, login(srv.ports["submission"], ALICE) as alice:
        for n in range(3):
            assert send(alice, ALICE, [f"x{n}@remote.example"]) == (250, "")
    assert not (root.state_dir / "sendlimits").exists()
