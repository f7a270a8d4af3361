"""A list's "require SMTP authentication" switch (hMailServer's), against a real
in-process server with smtplib: the envelope sender of port 25 can be forged, so a list
with the switch takes mail only from a client that authenticated on 587/465."""
from __future__ import annotations

import json
import smtplib
import time

import pytest

from engine import directory_edit, settings as settings_mod
from conftest import run_cli
from engine.maildir import Maildir
from helpers_server import make_root, running_server, tls_context

PW = {"alice@example.com": "alice-password-1", "bob@example.com": "bob-password-12",
      "boss@example.com": "boss-password-1"}
REFUSED = (550, b"5.7.1 This list accepts mail only from authenticated senders")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("lists"), accounts=PW, settings={"queue.offline": True,
                                                                      "relay.trusted_networks": ["127.0.0.9/32"]})
    cfg = settings_mod.load(root.config_file)
    members = ["alice@example.com", "bob@example.com"]
    directory_edit.add_list(root, cfg, "staff@example.com", "members", members=members, require_auth=True)
    directory_edit.add_list(root, cfg, "news@example.com", "announce", sender="boss@example.com", members=members)
    directory_edit.add_list(root, cfg, "open@example.com", "members", members=members)
    with running_server(root) as server:
        yield server


def count(root, address: str) -> int:
    local, domain = address.split("@")
    box = Maildir.for_account(root, domain, local)
    return sum(len(list((box.path / sub).iterdir())) for sub in ("new", "cur") if (box.path / sub).is_dir())


def message(sender: str, to: str, subject: str) -> bytes:
    return f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhello\r\n".encode()


def port25(srv) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20)
    s.ehlo("forger.test")
    return s


def submission(srv, user: str) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20)
    s.starttls(context=tls_context())
    s.ehlo("client.test")
    s.login(user, PW[user])
    return s


@pytest.mark.parametrize("lst, member", [("staff@example.com", "alice@example.com"),    # switched on
                                         ("news@example.com", "boss@example.com")])     # announce default
def test_forged_member_on_port_25_is_refused_authenticated_member_on_587_gets_through(srv, lst, member):
    before = count(srv.root, "bob@example.com")
    with port25(srv) as s:
        assert s.mail(member)[0] == 250
        assert s.rcpt(lst) == REFUSED
        assert s.rcpt("bob@example.com")[0] == 250          # the session goes on; only the list is refused
        s.rset()
    assert count(srv.root, "bob@example.com") == before
    with submission(srv, member) as s:
        assert s.sendmail(member, [lst], message(member, lst, "authenticated")) == {}
    assert count(srv.root, "bob@example.com") == before + 1


def test_authentication_does_not_replace_membership(srv):
    with submission(srv, "boss@example.com") as s:
        s.mail("boss@example.com")
        assert s.rcpt("staff@example.com") == (550, b"5.7.1 Not authorized")
        s.rset()


def test_a_trusted_network_is_not_authentication(srv):
    """hMailServer's switch asks for SMTP AUTH: a client that may submit on 587 without it
    (relay.trusted_networks) is still refused by the list."""
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20, source_address=("127.0.0.9", 0)) as s:
        s.starttls(context=tls_context())
        s.ehlo("trusted.test")
        assert s.mail("alice@example.com")[0] == 250
        assert s.rcpt("staff@example.com") == REFUSED
        assert s.rcpt("bob@example.com")[0] == 250
        s.rset()


def test_switch_off_by_default_for_members_lists(srv):
    with port25(srv) as s:
        assert s.sendmail("alice@example.com", ["open@example.com"], message("alice@example.com", "x", "25")) == {}


def test_cli_switch_reaches_the_running_server(srv):
    """`mailctl list set` edits the domain file the running server watches: the next RCPT obeys it."""
    assert run_cli(srv.root, "list", "set", "open@example.com", "--require-auth").code == 0
    shown = json.loads(run_cli(srv.root, "list", "show", "open@example.com", "--json").out)
    assert shown["require_auth"] is True

    def rcpt_reply():
        with port25(srv) as s:
            s.mail("alice@example.com")
            return s.rcpt("open@example.com")
    deadline = time.monotonic() + 30
    while rcpt_reply() != REFUSED:
        assert time.monotonic() < deadline, "the server did not pick up require_auth"
        time.sleep(0.2)
    assert run_cli(srv.root, "list", "set", "open@example.com", "--no-require-auth").code == 0
    while rcpt_reply()[0] != 250:
        assert time.monotonic() < deadline + 30, "the server did not pick up no-require-auth"
        time.sleep(0.2)


def test_cli_add_set_and_show(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PW["alice@example.com"]})
    assert run_cli(root, "list", "add", "a@example.com", "--mode", "announce", "--sender", "alice").code == 0
    assert run_cli(root, "list", "add", "b@example.com", "--mode", "members", "--require-auth").code == 0
    assert run_cli(root, "list", "add", "c@example.com", "--mode", "announce", "--sender", "alice",
                   "--no-require-auth").code == 0
    assert run_cli(root, "list", "add", "d@example.com").code == 0

    def require_auth():
        rows = json.loads(run_cli(root, "list", "list", "--json").out)
        return {r["address"].partition("@")[0]: r["require_auth"] for r in rows}
    assert require_auth() == {"a": True, "b": True, "c": False, "d": False}
    text = (root.domains_dir / "example.com.toml").read_text()
    assert "require_auth = true" in text and "require_auth = false" in text
    assert run_cli(root, "list", "set", "d@example.com", "--require-auth").code == 0
    assert run_cli(root, "list", "set", "a@example.com", "--no-require-auth").code == 0
    assert require_auth() == {"a": False, "b": True, "c": False, "d": True}
    r = run_cli(root, "list", "set", "d@example.com")
    assert r.code == 2 and "give at least one option" in r.err
    r = run_cli(root, "list", "set", "d@example.com", "--mode", "announce")     # announce needs a sender
    assert r.code == 1 and "announce mode needs sender" in r.err


def test_hand_edited_switch_must_be_true_or_false(tmp_path):
    root = make_root(tmp_path)
    f = root.domains_dir / "example.com.toml"
    f.write_text(f.read_text() + '\n[lists.x]\nmode = "members"\nrequire_auth = "yes"\n')
    r = run_cli(root, "config", "check")
    assert r.code == 1 and "lists.x.require_auth: must be true or false" in r.err
