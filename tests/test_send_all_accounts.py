"""`mailctl send --all-accounts [--domain D]`: a notice to every user (hMailServer's server
sendout). Enabled accounts of enabled domains get one copy each, written at once in one
delivery; disabled ones and other domains none; a bad domain or a mixed call is refused."""
from __future__ import annotations

import json

from engine import directory_edit, settings as settings_mod
from engine.maildir import Maildir
from helpers_server import mailctl, make_root

NOTICE = b"From: admin@example.com\r\nTo: All users <undisclosed-recipients:;>\r\nSubject: Maintenance tonight\r\n\r\n" \
         b"The server restarts at 22:00.\r\n"


def inbox(root, address: str) -> int:
    local, _, domain = address.partition("@")
    md = Maildir.for_account(root, domain, local)
    return len(md.folder("INBOX").sync()) if md.exists() else 0


def test_every_enabled_account_gets_one_copy(tmp_path):
    people = ["ann@example.com", "bob@example.com", "off@example.com", "cy@other.example", "dee@shut.example"]
    root = make_root(tmp_path, domains=("example.com", "other.example", "shut.example"),
                     accounts={a: "a-password-123" for a in people}, settings={"queue.offline": True})
    cfg = settings_mod.load(root.config_file)
    directory_edit.set_account(root, cfg, "off@example.com", enabled=False)
    directory_edit.set_domain(root, cfg, "shut.example", enabled=False)
    sent = mailctl(root, "send", "--all-accounts", "-f", "admin@example.com", "--json", input=NOTICE.decode())
    assert sent.returncode == 0, sent.stderr
    assert sorted(json.loads(sent.stdout)["delivered"]) == ["ann@example.com", "bob@example.com", "cy@other.example"]
    assert [inbox(root, a) for a in people] == [1, 1, 0, 1, 0]
    only = mailctl(root, "send", "--all-accounts", "--domain", "other.example", input=NOTICE.decode())
    assert only.returncode == 0, only.stderr
    assert [inbox(root, a) for a in people] == [1, 1, 0, 2, 0]
    for args, says in ((["--all-accounts", "--domain", "nowhere.example"], "no domain nowhere.example"),
                       (["--all-accounts", "bob@example.com"], "takes no RECIPIENTS"),
                       (["--domain", "example.com", "bob@example.com"], "goes with --all-accounts")):
        refused = mailctl(root, "send", *args, input=NOTICE.decode())
        assert refused.returncode != 0 and says in refused.stderr, refused.stderr
    assert [inbox(root, a) for a in people] == [1, 1, 0, 2, 0]
