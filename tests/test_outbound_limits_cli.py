"""mailctl account show (sending counts, limits, block), account unblock and account limits,
through the real CLI entry point, with hostile arguments and hostile state files."""
from __future__ import annotations

import json
import os
import time

import pytest

from conftest import run_cli, run_mailctl, tree_snapshot
from engine import directory_edit, settings as settings_mod
from engine.errors import ConfigError
from engine.sendcounts import SendCounts, file_name
from engine.sendlimits_settings import Limits
from helpers_server import password_hash

ALICE = "alice@example.com"
LIMITS = Limits(messages_per_hour=100, messages_per_day=3, recipients_per_hour=200, recipients_per_day=1000)


@pytest.fixture
def alice(root, settings):
    directory_edit.add_domain(root, settings, "example.com")
    directory_edit.add_account(root, settings, ALICE, password_hash("alice-password-1"))
    return ALICE


def sending(cli, address=ALICE) -> dict:
    r = cli("account", "show", address, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)["sending"]


def test_show_gives_counts_limits_and_the_block(root, cli, alice):
    assert sending(cli) == {"messages_last_hour": 0, "messages_last_day": 0, "recipients_last_hour": 0,
                            "recipients_last_day": 0, "blocked": False, "blocked_since": None,
                            "blocked_why": None, "own_limits": {},
                            "limits": {"messages_per_hour": 100, "messages_per_day": 500,
                                       "recipients_per_hour": 200, "recipients_per_day": 1000}}
    two_hours_ago = time.time() - 7200
    SendCounts(root, lambda: two_hours_ago).record(ALICE, LIMITS, ["a@far.example", "b@far.example"])
    store = SendCounts(root)
    for _ in range(2):
        assert store.record(ALICE, LIMITS, ["A@far.example", "c@far.example"]) is None
    over = store.record(ALICE, LIMITS, ["d@far.example"])
    assert over.text() == "sending limit of 3 messages per day" and over.daily
    s = sending(cli)
    assert (s["messages_last_hour"], s["messages_last_day"]) == (2, 3)
    assert (s["recipients_last_hour"], s["recipients_last_day"]) == (2, 3)       # a, c; a, b, c
    assert s["blocked"] is True and s["blocked_why"] == "sending limit of 3 messages per day"
    assert abs(s["blocked_since"] - time.time()) < 60
    human = cli("account", "show", ALICE)
    assert human.code == 0
    lines = dict(line.split(None, 1) for line in human.out.splitlines() if line.split(None, 1)[1:])
    assert lines["sent_last_hour"] == "2 messages of 100, 2 external recipients of 200"
    assert lines["sent_last_day"] == "3 messages of 500, 3 external recipients of 1000"
    assert lines["sending_blocked"].startswith("yes, since ") and "mailctl account unblock" in lines["sending_blocked"]


def test_unblock_lifts_the_block_and_forgets_the_counts(root, cli, alice):
    store = SendCounts(root)
    tight = Limits(messages_per_day=1)
    assert store.record(ALICE, tight, ["x@far.example"]) is None
    assert store.record(ALICE, tight, ["x@far.example"]).daily
    assert store.record(ALICE, tight, ["x@far.example"]) == "sending limit of 1 messages per day"   # blocked
    r = cli("account", "unblock", "ALICE@Example.COM")
    assert r.code == 0 and r.out == f"{ALICE} unblocked; its sending counts start afresh\n", r.err
    assert sending(cli)["blocked"] is False and sending(cli)["messages_last_day"] == 0
    assert store.record(ALICE, tight, ["x@far.example"]) is None
    r = cli("account", "unblock", ALICE)
    assert r.code == 0 and r.out == f"{ALICE} was not blocked; its sending counts start afresh\n"


def test_limits_set_show_and_back_to_the_default(root, cli, alice):
    r = cli("account", "limits", ALICE, "--messages-per-hour", "7", "--recipients-per-day", "0")
    assert r.code == 0 and r.out == f"sending limits of {ALICE} set\n", r.err
    text = (root.domains_dir / "example.com.toml").read_text()
    assert "send_messages_per_hour = 7" in text and "send_recipients_per_day = 0" in text
    r = cli("account", "limits", ALICE, "--json")
    assert json.loads(r.out) == {"address": ALICE, "own_limits": {"messages_per_hour": 7, "recipients_per_day": 0},
                                 "limits": {"messages_per_hour": 7, "messages_per_day": 500,
                                            "recipients_per_hour": 200, "recipients_per_day": 0}}
    r = cli("account", "limits", ALICE)
    assert "recipients_per_day    no limit" in r.out and "set_for_this_account  messages_per_hour, recipients_per_day" \
        in r.out
    r = cli("account", "limits", ALICE, "--messages-per-hour", "default")
    assert r.code == 0
    assert "send_messages_per_hour" not in (root.domains_dir / "example.com.toml").read_text()
    assert sending(cli)["own_limits"] == {"recipients_per_day": 0}


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", "99999999999", "", "1e3", "٣", "default\n", "9" * 5000])
def test_limits_refuses_bad_numbers_and_writes_nothing(root, cli, alice, value):
    before = tree_snapshot(root.path)
    r = cli("account", "limits", ALICE, "--messages-per-day", value)
    assert r.code == 2 and "must be a whole number from 0 (no limit) to 10000000, or 'default'" in r.err
    assert "Traceback" not in r.err
    assert tree_snapshot(root.path) == before


@pytest.mark.parametrize("command", [("show",), ("unblock",), ("limits", "--messages-per-hour", "5")])
@pytest.mark.parametrize("bad", ["../../etc/passwd", "alice@../../x", "", "-", "a" * 5000 + "@example.com",
                                 "alice@example.com\nx", "nobody@example.com", "alice@example.org"])
def test_hostile_addresses_get_one_line_and_change_nothing(root, cli, alice, command, bad):
    before = tree_snapshot(root.path)
    r = cli("account", command[0], *command[1:], "--", bad)
    assert r.code == 1 and "Traceback" not in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1 and len(r.err) < 400
    assert tree_snapshot(root.path) == before
    assert not (root.state_dir / "sendlimits").exists()


def test_bytes_that_are_not_utf8(root, alice):
    for command in ("show", "unblock", "limits"):
        r = run_mailctl(root, "account", command, b"caf\xe9\xff@example.com")
        assert r.returncode in (1, 2) and b"Traceback" not in r.stderr and r.stderr.count(b"\n") == 1


def test_a_torn_foreign_or_linked_state_file_counts_as_none(root, cli, alice, tmp_path):
    folder = root.state_dir / "sendlimits"
    folder.mkdir(parents=True)
    mine = folder / file_name(ALICE)
    for junk in (b"", b"{", b"[1,2]", b'{"account": "alice@example.com", "messages": [["x", 1]]}',
                 b'{"account": "bob@example.com", "messages": [[99999999999, 5]]}', b"\xff" * 100):
        mine.write_bytes(junk)
        assert sending(cli)["messages_last_day"] == 0
        assert SendCounts(root).record(ALICE, LIMITS, ["x@far.example"]) is None
        assert sending(cli)["messages_last_day"] == 1
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"account": ALICE, "messages": [[int(time.time() // 60), 3]]}))
    mine.unlink()
    os.symlink(outside, mine)
    assert sending(cli)["messages_last_day"] == 0              # never read through a link
    assert SendCounts(root).record(ALICE, LIMITS, ["x@far.example"]) is None
    assert not mine.is_symlink() and json.loads(outside.read_text())["messages"][0][1] == 3


def test_a_bad_override_in_the_domain_file_is_named_with_its_line(root, cli, alice):
    path = root.domains_dir / "example.com.toml"
    path.write_text(path.read_text() + "send_messages_per_day = -5\nsend_recipients_per_hour = \"lots\"\n")
    r = cli("config", "check")
    assert r.code == 1
    assert "example.com.toml:" in r.err + r.out and "send_messages_per_day: must be a whole number from 0" in r.err + r.out
    assert "send_recipients_per_hour" in r.err + r.out


def test_the_settings_refuse_nonsense(root):
    text = root.config_file.read_text()
    assert text.count("[send_limits]\n") == 1
    root.config_file.write_text(text.replace("[send_limits]\n", "[send_limits]\nmessages_per_hour = -1\n"
                                                                 "unblock_after_hours = \"soon\"\n"))
    with pytest.raises(ConfigError) as e:
        settings_mod.load(root.config_file)
    problems = " | ".join(e.value.problems)
    assert "send_limits.messages_per_hour" in problems and "send_limits.unblock_after_hours" in problems


def test_without_a_root(tmp_path):
    r = run_cli(tmp_path / "nothing", "account", "unblock", ALICE)
    assert r.code == 1 and "not a mail root" in r.err
