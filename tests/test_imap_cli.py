"""mailctl mailbox ... and mailctl who, plus IMAP/POP3 through a real `mailctl serve`."""
from __future__ import annotations

import imaplib
import json
import poplib
import time

from conftest import run_cli
from engine import mailbox_admin
from helpers_mail import PASSWORD, add_users, maildir, message, new_root
from helpers_server import make_root, mailctl, serve_process


def test_mailbox_commands(tmp_path):
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    md = maildir(root)
    md.deliver(message("a"))
    md.deliver(message("b"), flags=["\\Seen", "\\Deleted"])
    r = run_cli(root, "mailbox", "list", "alice@example.com", "--json")
    assert r.code == 0, r.err
    rows = {row["folder"]: row for row in json.loads(r.out)}
    assert rows["INBOX"]["messages"] == 2 and rows["INBOX"]["unseen"] == 1 and rows["INBOX"]["size"] > 0
    assert rows["Sent"]["special_use"] == "\\Sent"
    assert run_cli(root, "mailbox", "create", "alice@example.com", "Projects/2024").code == 0
    r = run_cli(root, "mailbox", "create", "alice@example.com", "../evil")
    assert r.code == 1 and "folder name" in r.err
    assert run_cli(root, "mailbox", "rename", "alice@example.com", "Projects", "Work").code == 0
    names = [row["folder"] for row in json.loads(run_cli(root, "mailbox", "list", "alice@example.com", "--json").out)]
    assert "Work/2024" in names and "Projects" not in names
    r = run_cli(root, "mailbox", "delete", "alice@example.com", "Nope", "--yes")
    assert r.code == 1 and "does not exist" in r.err
    assert run_cli(root, "mailbox", "delete", "alice@example.com", "Work/2024", "--yes").code == 0
    r = run_cli(root, "mailbox", "expunge", "alice@example.com", "--json")
    assert r.code == 0 and json.loads(r.out) == {"expunged": 1}
    old = md.deliver(message("old"), internaldate=time.time() - 40 * 86400)
    r = run_cli(root, "mailbox", "expunge", "alice@example.com", "--folder", "INBOX", "--older-than", "30", "--yes")
    assert r.code == 0 and "1 message expunged" in r.out
    assert [m.uid for m in md.folder("INBOX").sync()] == [1]
    (md.path / "dovecot-uidlist").unlink()
    assert run_cli(root, "mailbox", "resync", "alice@example.com").code == 0
    assert len(md.folder("INBOX").sync()) == 1
    r = run_cli(root, "mailbox", "list", "nobody@example.com")
    assert r.code == 1 and "does not exist" in r.err
    assert old.uid == 3


def test_autoexpunge_uses_the_clock(tmp_path):
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    md = maildir(root)
    md.deliver(message("keep"), flags=["\\Deleted"], internaldate=1_000_000)
    md.deliver(message("go"), flags=["\\Deleted"], internaldate=0)
    assert mailbox_admin.autoexpunge(md, 0) == 0
    assert mailbox_admin.autoexpunge(md, 10, clock=lambda: 10 * 86400 + 500_000) == 1
    assert len(md.folder("INBOX").sync()) == 1


def test_served_by_mailctl_serve_and_who(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": PASSWORD},
                     settings={"auth.allow_plaintext": True})
    with serve_process(root) as proc:
        c = imaplib.IMAP4("127.0.0.1", proc.ports["imap"], timeout=20)
        c.login("alice@example.com", PASSWORD)
        c.select("INBOX")
        p = poplib.POP3("127.0.0.1", proc.ports["pop3"], timeout=20)
        p.user("alice@example.com")
        p.pass_(PASSWORD)
        r = mailctl(root, "who", "--json")
        assert r.returncode == 0, r.stderr
        sessions = json.loads(r.stdout)
        users = {(s["protocol"], s["user"]) for s in sessions}
        assert ("imap", "alice@example.com") in users and ("pop3", "alice@example.com") in users
        r = mailctl(root, "who")
        assert "alice@example.com" in r.stdout
        p.quit()
        c.logout()
    r = mailctl(root, "who")
    assert r.returncode == 1 and "not running" in r.stderr
