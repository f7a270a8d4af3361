"""mailctl queue: every command through the real CLI entry point, with --json checked."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli
from dnsserver import DNSServer
from helpers_queue import base_settings, configure, inbox, local_root, message, parse_dsn
from engine.queue import Queue
from sinks import Sink


@pytest.fixture
def root(tmp_path_factory, tmp_path):
    return local_root(tmp_path_factory, tmp_path)


@pytest.fixture
def sink():
    s = Sink("127.0.0.2")
    yield s
    s.stop()


@pytest.fixture
def dns():
    d = DNSServer({"far.example": {"MX": [(10, "mx.far.example")]}, "mx.far.example": {"A": ["127.0.0.2"]},
                   "near.example": {"MX": [(10, "mx.far.example")]}})
    yield d
    d.close()


@pytest.fixture
def items(root, dns, sink):
    configure(root, base_settings(dns, sink.port))
    q = Queue(root)
    a = q.enqueue("alice@example.com", ["x@far.example", "y@near.example"],
                  message("alice@example.com", ["x@far.example"], "first"), now=1_000_000.0)
    b = q.enqueue("bob@example.com", ["z@far.example"], message("bob@example.com", ["z@far.example"], "second"))
    return a, b


def jsonl(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_list_json_lines_and_filters(root, items):
    a, b = items
    r = run_cli(root, "queue", "list", "--json")
    assert r.code == 0, r.err
    rows = jsonl(r.out)
    assert [x["id"] for x in rows] == [a, b]
    assert rows[0]["sender"] == "alice@example.com" and rows[0]["state"] == "deferred"
    assert [x["address"] for x in rows[0]["recipients"]] == ["x@far.example", "y@near.example"]
    assert set(rows[0]) >= {"id", "state", "sender", "size", "created", "age_seconds", "attempts",
                            "next_attempt", "last_error", "recipients"}
    assert [x["id"] for x in jsonl(run_cli(root, "queue", "list", "--json", "--from", "bob").out)] == [b]
    assert [x["id"] for x in jsonl(run_cli(root, "queue", "list", "--json", "--to", "y@").out)] == [a]
    assert [x["id"] for x in jsonl(run_cli(root, "queue", "list", "--json", "--domain", "near.example").out)] == [a]
    assert [x["id"] for x in jsonl(run_cli(root, "queue", "list", "--json", "--older-than", "1d").out)] == [a]
    assert jsonl(run_cli(root, "queue", "list", "--json", "--state", "hold").out) == []
    human = run_cli(root, "queue", "list")
    assert a in human.out and "alice@example.com" in human.out
    bad = run_cli(root, "queue", "list", "--older-than", "soon")
    assert bad.code == 1 and "duration" in bad.err and "Traceback" not in bad.err


def test_show(root, items):
    a, _ = items
    r = run_cli(root, "queue", "show", a, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["id"] == a and "Subject: first" in data["headers"] and "hello" not in data["headers"]
    r = run_cli(root, "queue", "show", a, "--body")
    assert "hello" in r.out and "x@far.example" in r.out
    r = run_cli(root, "queue", "show", a)
    assert "Subject: first" in r.out and "pending" in r.out
    for bad in ("0123456789abcdef", "../../etc/passwd", "zz"):
        r = run_cli(root, "queue", "show", bad)
        assert r.code == 1 and "not" in r.err and "Traceback" not in r.err


def test_hold_release_delete_with_stdin_and_confirmation(root, items):
    a, b = items
    q = Queue(root)
    r = run_cli(root, "queue", "hold", a)
    assert r.code == 0 and q.find(a).state == "hold"
    assert [x["id"] for x in jsonl(run_cli(root, "queue", "list", "--json", "--state", "hold").out)] == [a]
    r = run_cli(root, "queue", "release", "--all")
    assert r.code == 0 and q.find(a).state == "deferred"
    r = run_cli(root, "queue", "hold", "--all")
    assert {e.state for e in q.all()} == {"hold"}
    run_cli(root, "queue", "release", a, b)
    r = run_cli(root, "queue", "delete", a)                 # no terminal, no --yes: refused
    assert r.code == 1 and "--yes" in r.err and q.count() == 2
    r = run_cli(root, "queue", "delete", "-", "--yes", input=f"{a}\n")
    assert r.code == 0, r.err
    assert [e.id for e in q.all()] == [b] and not q.body_path(a).exists()
    r = run_cli(root, "queue", "delete", a, "--yes")
    assert r.code == 1 and "not found" in r.err
    r = run_cli(root, "queue", "delete", "--all", "--yes")
    assert r.code == 0 and q.count() == 0


def test_retry_makes_item_due(root, items):
    a, _ = items
    q = Queue(root)
    q.edit(a, lambda e: setattr(e, "next_attempt", 9e9))
    assert run_cli(root, "queue", "retry", a).code == 0
    assert q.find(a).next_attempt < 9e9


def test_bounce_sends_dsn_and_removes(root, items):
    a, _ = items
    r = run_cli(root, "queue", "bounce", a, "--yes")
    assert r.code == 0, r.err
    assert Queue(root).ids("deferred") != [] and a not in [e.id for e in Queue(root).all()]
    [dsn] = [m for m in inbox(root, "alice@example.com") if b"multipart/report" in m]
    _, groups = parse_dsn(dsn)
    assert [g["Final-Recipient"] for g in groups] == ["rfc822; x@far.example", "rfc822; y@near.example"]
    assert all(g["Action"] == "failed" for g in groups)


def test_stats_json(root, items):
    r = run_cli(root, "queue", "stats", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["messages"] == 2 and data["states"]["deferred"] == 2
    assert data["domains"]["far.example"]["total"] == 2 and data["domains"]["near.example"]["total"] == 1
    assert data["total"]["total"] == 3
    assert data["domains"]["far.example"][data["age_buckets"][-1]] == 1     # the old one
    assert "far.example" in run_cli(root, "queue", "stats").out


def test_flush_without_server_delivers_in_foreground(root, items, sink):
    r = run_cli(root, "queue", "flush")
    assert r.code == 0, r.err
    assert sorted(sink.recipients()) == ["x@far.example", "y@near.example", "z@far.example"]
    assert Queue(root).count() == 0


def test_commands_need_ids(root, items):
    r = run_cli(root, "queue", "hold")
    assert r.code == 2
