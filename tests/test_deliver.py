"""mailctl deliver: the first path mail takes into the mail root."""
from __future__ import annotations

import json

import pytest

from conftest import PASSWORD
from engine.maildir import Maildir
from engine.queue import Queue

MSG = b"From: a@far.example\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture
def world(cli):
    cli("domain", "add", "example.com")
    for a in ("alice", "bob"):
        assert cli("account", "add", f"{a}@example.com", "--password-stdin", input=PASSWORD).code == 0
    return cli


def inbox(root, local):
    return [p for p in (root.mail_dir / "example.com" / local / "new").iterdir()]


def test_deliver_to_account_from_file(world, root, tmp_path):
    f = tmp_path / "m.eml"
    f.write_bytes(MSG)
    r = world("deliver", "alice@example.com", str(f), "--from", "a@far.example")
    assert r.code == 0, r.err
    [p] = inbox(root, "alice")
    data = p.read_bytes()
    assert data.startswith(b"Return-Path: <a@far.example>\nDelivered-To: alice@example.com\n")
    assert data.endswith(b"\n\nhello\n") and b"\r" not in data
    folder = Maildir.for_account(root, "example.com", "alice").folder("INBOX")
    [m] = folder.sync()
    assert m.uid == 1 and m.base in (root.mail_dir / "example.com/alice/dovecot-uidlist").read_text()


def test_deliver_via_alias_list_forward_and_catch_all(world, root):
    world("alias", "add", "sales@example.com", "alice", "bob")
    world("list", "add", "team@example.com", "--member", "alice", "--member", "out@far.example")
    world("forward", "set", "bob@example.com", "bob@far.example", "--keep-copy")
    world("domain", "set", "example.com", "--catch-all", "alice")
    for rcpt in ("sales@example.com", "team@example.com", "nobody@example.com"):
        r = world("deliver", rcpt, "--json", input=MSG)
        assert r.code == 0, r.err
    out = json.loads(world("deliver", "team@example.com", "--json", input=MSG).out)
    assert out["delivered"] == ["alice@example.com"] and out["external"] == ["out@far.example"]
    assert len(inbox(root, "alice")) == 4 and len(inbox(root, "bob")) == 1
    queued = Queue(root).all()
    assert sorted(r.address for e in queued for r in e.recipients) == ["bob@far.example", "out@far.example", "out@far.example"]


def test_deliver_rejections(world, root):
    r = world("deliver", "ghost@example.com", input=MSG)
    assert r.code == 1 and "550 5.1.1 Unknown User" in r.err
    world("account", "disable", "bob@example.com")
    r = world("deliver", "bob@example.com", input=MSG)
    assert r.code == 1 and "Account Is Not Active" in r.err
    r = world("deliver", "x@far.example", input=MSG)
    assert r.code == 1 and "not a local domain" in r.err
    r = world("deliver", "alice@example.com", input=b"")
    assert r.code == 1 and "empty message" in r.err
    assert inbox(root, "alice") == []


def test_quota_exceeded(world, root):
    world("account", "quota", "alice@example.com", "1")
    big = MSG + b"x" * (700 * 1024) + b"\r\n"
    assert world("deliver", "alice@example.com", input=big).code == 0
    r = world("deliver", "alice@example.com", input=big)
    assert r.code == 1 and "Mailbox Full" in r.err and len(r.err.strip().splitlines()) == 1
    assert len(inbox(root, "alice")) == 1
    assert list((root.mail_dir / "example.com/alice/tmp").iterdir()) == []
