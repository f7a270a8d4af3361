"""mailctl access list | add | remove and mailctl ban add, through the real CLI entry
point: what they write and show, and hostile arguments refused in one line (exit 1,
no traceback) with nothing changed."""
from __future__ import annotations

import json
import time

import pytest

from conftest import run_cli, tree_snapshot
from engine.access.entries import AccessEntries
from engine.bans import Bans
from engine import settings as settings_mod


def test_add_list_remove_with_json(root, cli):
    assert cli("access", "list", "--json").out.strip() == "[]"
    r = cli("access", "add", "deny", "192.0.2.77/24", "--listener", "smtp", "--listener", "imap",
            "--minutes", "90", "--reason", "scanner", "--json")
    assert r.code == 0, r.err
    added = json.loads(r.out)
    assert added["value"] == "192.0.2.0/24" and added["listeners"] == ["imap", "smtp"]
    assert 89 * 60 < added["remaining_s"] <= 90 * 60 and added["reason"] == "scanner"
    r = cli("access", "add", "sender", "*@Spam.Example", "--expires", "2099-01-01T00:00")
    assert r.code == 0 and "sender *@spam.example" in r.out, r.err
    assert cli("access", "add", "allow", "2001:DB8::1").code == 0
    rows = json.loads(cli("access", "list", "--json").out)
    assert [(x["kind"], x["value"]) for x in rows] == [
        ("deny", "192.0.2.0/24"), ("sender", "*@spam.example"), ("allow", "2001:db8::1")]
    assert rows[2]["expires"] == 0 and rows[2]["remaining_s"] is None
    assert [x["kind"] for x in json.loads(cli("access", "list", "--kind", "sender", "--json").out)] == ["sender"]
    human = cli("access", "list")
    assert human.code == 0 and "192.0.2.0/24" in human.out and "imap, smtp" in human.out and "never" in human.out
    # the same kind, value and listeners again: replaced, not doubled
    assert cli("access", "add", "allow", "2001:db8::1", "--minutes", "5").code == 0
    assert len(json.loads(cli("access", "list", "--json").out)) == 3
    r = cli("access", "remove", added["id"])
    assert r.code == 0 and f"access entry {added['id']} removed" in r.out
    assert cli("access", "remove", "2001:db8:0::1").code == 0          # by value, any spelling
    assert [x["value"] for x in json.loads(cli("access", "list", "--json").out)] == ["*@spam.example"]


def test_ban_add_is_listed_and_lifted_by_the_existing_commands(root, cli):
    assert cli("ban", "add", "192.0.2.5", "--reason", "abuse").code == 0
    assert cli("ban", "add", "::ffff:192.0.2.6", "--minutes", "1").code == 0
    rows = {r["ip"]: r for r in json.loads(cli("ban", "list", "--json").out)}
    assert rows["192.0.2.5"]["until"] is None and rows["192.0.2.5"]["manual"] is True
    assert 0 < rows["192.0.2.6"]["remaining_s"] <= 60
    assert "lifted by hand" in cli("ban", "list").out
    settings = settings_mod.load(root.config_file)
    assert Bans(root, settings).is_manually_banned("192.0.2.5")
    assert cli("ban", "remove", "192.0.2.5").code == 0
    assert not Bans(root, settings).is_banned("192.0.2.5")


HOSTILE = [
    ("access", "add", "deny", "300.1.1.1"),
    ("access", "add", "deny", "192.0.2.0/33"),
    ("access", "add", "deny", "fe80::1%eth0"),
    ("access", "add", "deny", ""),
    ("access", "add", "deny", "1" * 5000),
    ("access", "add", "deny", "192.0.2.1\n"),
    ("access", "add", "allow", "10.0.0.0/8", "--listener", "../../etc"),
    ("access", "add", "deny", "10.0.0.0/8", "--minutes", "nan"),
    ("access", "add", "deny", "10.0.0.0/8", "--minutes", "inf"),
    ("access", "add", "deny", "10.0.0.0/8", "--minutes", "-1"),
    ("access", "add", "deny", "10.0.0.0/8", "--minutes", "0"),
    ("access", "add", "deny", "10.0.0.0/8", "--minutes", "5", "--expires", "2099-01-01"),
    ("access", "add", "deny", "10.0.0.0/8", "--expires", "2001-01-01"),
    ("access", "add", "deny", "10.0.0.0/8", "--expires", "tomorrow"),
    ("access", "add", "deny", "10.0.0.0/8", "--expires", "9" * 5000),
    ("access", "add", "deny", "10.0.0.0/8", "--reason", "two\nlines"),
    ("access", "add", "sender", "a@@b"),
    ("access", "add", "sender", "a b@example.com"),
    ("access", "add", "sender", "x\r\nRCPT TO:<y>"),
    ("access", "add", "sender", "a" * 400),
    ("access", "add", "sender", "user@"),
    ("access", "add", "recipient", "a@..example"),
    ("access", "add", "recipient", "b@example.com", "--listener", "smtp"),
    ("access", "add", "bogus", "1.2.3.4"),
    ("access", "remove", "nothing-like-it"),
    ("ban", "add", "not-an-ip"),
    ("ban", "add", "192.0.2.1", "--minutes", "nan"),
    ("ban", "add", "192.0.2.1", "--reason", "a\x1bb"),
]


@pytest.mark.parametrize("argv", HOSTILE, ids=[" ".join(a)[:40] for a in HOSTILE])
def test_hostile_arguments_are_refused_in_one_line_and_change_nothing(root, argv):
    assert run_cli(root, "access", "add", "deny", "198.51.100.0/24").code == 0
    before = tree_snapshot(root.path)
    r = run_cli(root, *argv)
    assert r.code in (1, 2), (r.out, r.err)
    assert "Traceback" not in r.err and r.err.count("\n") <= 4 and r.err.strip(), r.err     # click: usage + error
    assert tree_snapshot(root.path) == before


def test_a_broken_hand_edit_is_reported_and_never_overwritten(root, cli):
    assert cli("access", "add", "deny", "192.0.2.0/24").code == 0
    path = root.state_dir / "access.toml"
    path.write_text(path.read_text() + "\n[[entry]\nkind = \n")
    broken = path.read_bytes()
    for argv in (("access", "add", "deny", "198.51.100.1"), ("access", "list"), ("access", "remove", "192.0.2.0/24")):
        r = cli(*argv)
        assert r.code == 1 and "state/access.toml:" in r.err and "Traceback" not in r.err, r.err
    assert path.read_bytes() == broken
    # a running server keeps the last good entries meanwhile
    store = AccessEntries(root)
    path.write_text('[[entry]]\nkind = "deny"\nvalue = "192.0.2.0/24"\nlisteners = []\n')
    assert [e.value for e in store.active()] == ["192.0.2.0/24"]
    time.sleep(0.01)
    path.write_text("[[entry]\n")
    assert [e.value for e in store.active()] == ["192.0.2.0/24"]


def test_check_message_shows_what_the_access_lists_say(tmp_path):
    from helpers_server import make_root
    root = make_root(tmp_path, settings={
        "mailauth.spf": False, "mailauth.dkim": False, "mailauth.dmarc": False,
        "access.incoming_relays": ["192.0.2.25"], "access.block_senders": ["*@spam.example"],
        "access.ranges": {"partner": {"networks": ["198.51.100.0/24"], "spam_checks": False}}})
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"Received: from mx.partner.example (mx.partner.example [198.51.100.9])\n\tby backup.example\n"
                    b"From: a@partner.example\nSubject: hi\n\nbody\n")
    r = run_cli(root, "check", "message", str(msg), "--ip", "192.0.2.25", "--from", "a@partner.example", "--json")
    assert r.code == 0, r.err
    access = json.loads(r.out)["access"]
    assert access["checked_as"] == "198.51.100.9" and access["spam_checks"] is False
    assert access["connect_refused"] is None and access["sender_blocked"] is None
    r = run_cli(root, "check", "message", str(msg), "--ip", "203.0.113.5", "--from", "x@spam.example")
    assert r.code == 0 and "sender_blocked=*@spam.example" in r.out and "checked_as=203.0.113.5" in r.out
    assert r.out.rstrip().endswith("550 5.7.1 Sender Address Rejected: Access Denied")
    assert run_cli(root, "ban", "add", "203.0.113.5").code == 0
    r = run_cli(root, "check", "message", str(msg), "--ip", "203.0.113.5", "--json")
    assert json.loads(r.out)["reply"] == "554 5.7.1 Connections from your address are not accepted"
