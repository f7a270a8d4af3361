"""Access lists at RCPT TO (engine/accept/accesscheck.py): sender and recipient block
lists with wildcards (mailctl.toml and `mailctl access add`), and hMailServer's IP ranges
(engine/access/ranges.py, directions.py): which of the four delivery directions a
client's range allows or wants AUTH for, and that a range left at its defaults answers
exactly what the relay policy answers without one. Real servers, smtplib from loopback
addresses of their own."""
from __future__ import annotations

import smtplib

import pytest

from conftest import run_cli
from engine.access.ranges import checks_for
from helpers_server import make_root, running_server

BOB, SALES = "bob@example.com", "sales@example.com"
PASSWORD = "bob-password-1"
FAR, FAR2 = "carol@far.example", "dave@other.example"
SENDER_BLOCKED = "Sender Address Rejected: Access Denied"
RECIPIENT_BLOCKED = "Recipient Address Rejected: Access Denied"
NOT_ALLOWED = "Delivery Is Not Allowed To This Address"
ACCOUNTS = {BOB: PASSWORD, SALES: PASSWORD}
BASE = {"queue.offline": True, "auth.allow_plaintext": True}


def rcpt(srv, sender: str, recipient: str, ip: str = "127.0.0.1", listener: str = "smtp",
         login: bool = False) -> tuple[int, str]:
    """The answer to RCPT TO (or to MAIL FROM when that refuses)."""
    with smtplib.SMTP("127.0.0.1", srv.ports[listener], timeout=10, source_address=(ip, 0)) as s:
        s.ehlo("client.example")
        if login:
            s.login(BOB, PASSWORD)
        code, text = s.mail(sender)
        if code != 250:
            return code, text.decode()
        code, text = s.rcpt(recipient)
        return code, text.decode()


@pytest.fixture(scope="module")
def blocking(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("block"), accounts=ACCOUNTS, settings={
        **BASE, "access.block_senders": ["*@spam.example", "Mallory@Far.Example", "*.bulk.example"],
        "access.block_recipients": ["sales@*"], "relay.recipient_delimiter": "+"})
    with running_server(root) as server:
        yield server


def test_blocked_senders_are_refused_with_550_5_7_1_by_pattern(blocking):
    assert rcpt(blocking, "x@spam.example", BOB) == (550, f"5.7.1 {SENDER_BLOCKED}")
    assert rcpt(blocking, "mallory@far.example", BOB)[0] == 550        # case does not matter
    assert rcpt(blocking, "a@mx.bulk.example", BOB)[0] == 550          # a domain pattern: subdomains
    assert rcpt(blocking, "a@bulk.example", BOB)[0] == 250             # ... not the domain itself
    assert rcpt(blocking, "x@spam.example.net", BOB)[0] == 250         # whole domain, not a prefix
    assert rcpt(blocking, "mallory@far.example.org", BOB)[0] == 250
    assert rcpt(blocking, "", BOB)[0] == 250                           # the null sender
    assert blocking.runtime.counters.get("access_sender_blocked", 0) >= 3


def test_blocked_recipients_are_refused_for_everyone_even_after_auth(blocking):
    assert rcpt(blocking, FAR, SALES) == (550, f"5.7.1 {RECIPIENT_BLOCKED}")
    assert rcpt(blocking, BOB, SALES, listener="submission", login=True)[0] == 550
    assert rcpt(blocking, FAR, BOB)[0] == 250
    # the address it resolves to counts: plus addressing does not get around the list
    assert rcpt(blocking, FAR, "sales+x@example.com") == (550, f"5.7.1 {RECIPIENT_BLOCKED}")
    assert rcpt(blocking, FAR, "bob+x@example.com")[0] == 250
    assert blocking.runtime.counters.get("access_recipient_blocked", 0) >= 2


def test_the_sender_block_list_spares_authenticated_clients(blocking):
    assert run_cli(blocking.root, "access", "add", "sender", BOB).code == 0
    assert rcpt(blocking, BOB, BOB) == (550, f"5.7.1 {SENDER_BLOCKED}")       # forged from outside
    assert rcpt(blocking, BOB, BOB, listener="submission", login=True)[0] == 250
    assert run_cli(blocking.root, "access", "remove", BOB).code == 0


def test_entries_added_at_run_time_apply_at_once_and_expire(blocking):
    root = blocking.root
    assert rcpt(blocking, "eve@evil.example", BOB)[0] == 250
    r = run_cli(root, "access", "add", "sender", "evil.example", "--minutes", "10")
    assert r.code == 0, r.err
    assert rcpt(blocking, "eve@evil.example", BOB) == (550, f"5.7.1 {SENDER_BLOCKED}")
    assert rcpt(blocking, "eve@sub.evil.example", BOB)[0] == 250
    assert run_cli(root, "access", "add", "recipient", "b?b@example.com").code == 0
    assert rcpt(blocking, FAR, BOB) == (550, f"5.7.1 {RECIPIENT_BLOCKED}")
    assert run_cli(root, "access", "remove", "b?b@example.com").code == 0
    assert run_cli(root, "access", "remove", "@evil.example", "--kind", "sender").code == 0
    assert rcpt(blocking, "eve@evil.example", BOB)[0] == 250


# -- IP ranges -------------------------------------------------------------------------------

RANGES = {
    "internet": {"networks": ["0.0.0.0/0", "::/0"], "priority": 0},
    "lan": {"networks": ["127.0.51.0/24"], "priority": 10, "local_to_external": "allow",
            "spam_checks": False, "virus_checks": False},
    "closed": {"networks": ["127.0.52.0/24"], "priority": 10, "external_to_local": "deny"},
    "authonly": {"networks": ["127.0.53.0/24"], "priority": 10, "external_to_local": "auth"},
    "nothing_out": {"networks": ["127.0.54.0/24"], "priority": 10, "local_to_external": "deny",
                    "external_to_external": "deny"},
    "open": {"networks": ["127.0.55.0/24"], "priority": 10, "external_to_external": "allow"},
    "inner": {"networks": ["127.0.51.128/25"], "priority": 5, "local_to_external": "deny"},
}


@pytest.fixture(scope="module")
def ranged(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("ranges"), accounts=ACCOUNTS,
                     settings={**BASE, "access.ranges": RANGES})
    with running_server(root) as server:
        yield server


def test_external_to_external_needs_auth_from_the_internet_range(ranged):
    assert rcpt(ranged, FAR, FAR2) == (550, f"5.7.1 {NOT_ALLOWED}")
    assert rcpt(ranged, BOB, FAR2, listener="submission", login=True)[0] == 250
    assert rcpt(ranged, FAR, BOB)[0] == 250                        # external to local: allowed


def test_a_range_may_relay_without_auth_forbid_or_want_auth(ranged):
    assert rcpt(ranged, BOB, FAR, ip="127.0.51.9")[0] == 250       # lan: local to external allowed
    assert rcpt(ranged, FAR, FAR2, ip="127.0.51.9")[0] == 550      # ... external to external still auth
    assert rcpt(ranged, BOB, FAR, ip="127.0.51.200")[0] == 250     # priority beats the narrower 'inner'
    assert rcpt(ranged, FAR, BOB, ip="127.0.52.9") == (550, f"5.7.1 {NOT_ALLOWED}")   # closed
    assert rcpt(ranged, BOB, BOB, ip="127.0.52.9")[0] == 250       # ... local to local is not closed
    assert rcpt(ranged, FAR, BOB, ip="127.0.53.9") == (530, "5.7.0 SMTP Authentication Is Required")
    assert rcpt(ranged, FAR, FAR2, ip="127.0.55.9")[0] == 250      # open: relays anything
    # deny holds even for an authenticated client
    assert rcpt(ranged, BOB, FAR, ip="127.0.54.9", listener="submission", login=True) == (550, f"5.7.1 {NOT_ALLOWED}")
    assert rcpt(ranged, BOB, BOB, ip="127.0.54.9", listener="submission", login=True)[0] == 250
    counters = ranged.runtime.counters
    assert counters.get("access_direction_denied", 0) >= 2 and counters.get("access_auth_required", 0) >= 1


def test_checks_for_tells_the_spam_and_virus_stages_what_runs(ranged):
    settings = ranged.runtime.settings
    assert checks_for(settings, "127.0.51.9") == (False, False)
    assert checks_for(settings, "::ffff:127.0.51.9") == (False, False)
    assert checks_for(settings, "127.0.52.9") == (True, True)
    assert checks_for(settings, "not an address") == (True, True)


# -- defaults: the same answers as the relay policy without ranges ---------------------------

CASES = [  # (listener, login, client ip, sender, recipient)
    (listener, login, ip, sender, recipient)
    for listener, login in (("smtp", False), ("submission", False), ("submission", True))
    for ip in ("127.0.56.1", "127.0.57.1")
    for sender in (BOB, FAR, "")
    for recipient in (BOB, FAR2)
]


def answers(tmp_path, name: str, settings: dict) -> list[int]:
    root = make_root(tmp_path / name, accounts=ACCOUNTS, settings={
        **BASE, "relay.trusted_networks": ["127.0.57.0/24"], **settings})
    with running_server(root) as srv:
        return [rcpt(srv, sender, recipient, ip, listener, login)[0]
                for listener, login, ip, sender, recipient in CASES]


@pytest.mark.parametrize("open_relay", [False, True])
def test_a_range_at_its_defaults_answers_as_the_relay_policy_alone(tmp_path, open_relay):
    plain = answers(tmp_path, "plain", {"relay.open_relay_for_trusted": open_relay})
    ranged = answers(tmp_path, "ranged", {"relay.open_relay_for_trusted": open_relay,
                                          "access.ranges": {"all": {"networks": ["0.0.0.0/0"]}}})
    assert ranged == plain
    assert {250, 550, 530} <= set(plain)          # the cases do reach each answer
