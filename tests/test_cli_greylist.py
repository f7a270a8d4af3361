"""mailctl greylist list | allow | flush, through the real CLI entry point."""
from __future__ import annotations

import json
import os
import time

import pytest

from conftest import run_cli, tree_snapshot
from engine import settings as settings_mod
from engine.greylist import ALLOWED, Greylist

BOB = "bob@example.com"


def store(root, clock=time.time) -> Greylist:
    return Greylist(root, settings_mod.load(root.config_file).greylist, clock)


def test_list_shows_each_state_and_json(root, cli):
    assert cli("greylist", "list", "--json").out.strip() == "[]"
    now = time.time()
    g = store(root)
    g.start("192.0.2.0/24", "carol@far.example", BOB)
    store(root, lambda: now - 3600).start("198.51.100.0/24", "dave@far.example", BOB)
    g.look("198.51.100.0/24", "dave@far.example", BOB)             # an hour later: passes
    r = cli("greylist", "allow", "203.0.113.9")
    assert r.code == 0 and r.out.strip() == "greylisting lets 203.0.113.0/24 through", r.err
    r = cli("greylist", "list", "--json")
    assert r.code == 0, r.err
    rows = {row["client"]: row for row in json.loads(r.out)}
    assert rows["192.0.2.0/24"]["state"] == "waiting" and rows["192.0.2.0/24"]["sender"] == "carol@far.example"
    assert rows["198.51.100.0/24"]["state"] == "passed" and rows["198.51.100.0/24"]["last_used"] >= now
    assert rows["203.0.113.0/24"]["state"] == "allowed" and rows["203.0.113.0/24"]["sender"] == "*"
    assert set(rows["192.0.2.0/24"]) == {"client", "sender", "recipient", "state", "created", "passed",
                                         "last_used", "expires"}
    human = cli("greylist", "list")
    assert human.code == 0 and "carol@far.example" in human.out and "waiting" in human.out
    assert store(root).look("203.0.113.0/24", "x@y.example", BOB) == ALLOWED


def test_allow_takes_ipv6_by_its_network(root, cli):
    r = cli("greylist", "allow", "2001:db8:1:2:3::9")
    assert r.code == 0 and "2001:db8:1:2::/64" in r.out


@pytest.mark.parametrize("bad", ["../../etc/passwd", "192.0.2.1/../../x", "", "a" * 5000, "192.0.2.1\nx",
                                 "192.0.2.0/24", "999.1.1.1", "-"])
def test_allow_refuses_anything_but_an_address_and_writes_nothing(root, cli, bad):
    before = tree_snapshot(root.path)
    r = cli("greylist", "allow", "--", bad)
    assert r.code == 1 and "is not an IP address" in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1 and len(r.err) < 300
    assert tree_snapshot(root.path) == before


def test_flush_removes_expired_records_and_all_only_when_confirmed(root, cli):
    old = time.time() - 30 * 3600                  # past unused_expiry_hours (24)
    store(root, lambda: old).start("192.0.2.0/24", "old@far.example", BOB)
    store(root).start("192.0.2.0/24", "new@far.example", BOB)
    with open(store(root).dir / ".x.1.abcd.tmp", "w"):     # a crash's temp file, two hours old
        pass
    os.utime(store(root).dir / ".x.1.abcd.tmp", (old, old))
    assert [r.sender for r in store(root).records(include_expired=True)] == ["old@far.example", "new@far.example"]
    r = cli("greylist", "flush")
    assert r.code == 0 and r.out.strip() == "1 greylisting record(s) removed", r.err
    assert [r.sender for r in store(root).records(include_expired=True)] == ["new@far.example"]
    assert sorted(os.listdir(store(root).dir)) == [store(root).records()[0].name]
    r = cli("greylist", "flush", "--all")
    assert r.code == 1 and "--yes" in r.err
    assert len(store(root).records()) == 1
    r = cli("greylist", "flush", "--all", "--yes")
    assert r.code == 0 and r.out.strip() == "1 greylisting record(s) removed"
    assert store(root).records() == [] and cli("greylist", "list", "--json").out.strip() == "[]"


def test_without_a_root(tmp_path):
    r = run_cli(tmp_path / "nothing", "greylist", "list")
    assert r.code == 1 and "not a mail root" in r.err
