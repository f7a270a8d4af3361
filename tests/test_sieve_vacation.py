"""The vacation action's decision (engine/sieve/vacation.py, RFC 5230 §4.5, RFC 3834):
which messages would get an answer. Sending the reply is not built yet."""
from __future__ import annotations

import pytest

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
