"""mailctl mailbox share / mailctl mailbox acl and mailctl public add / grant / list: the
same dovecot-acl files SETACL writes, and one-line errors for bad arguments."""
from __future__ import annotations

import json

from conftest import run_cli
from engine.acl import aclfile, places
from helpers_mail import add_users, maildir, new_root


def _root(tmp_path):
    root = new_root(tmp_path / "r")
    add_users(root, ["alice", "bob"])
    add_users(root, ["xavier"], domain="other.test")
    md = maildir(root)
    md.create()
    md.create_folder("Projects")
    return root, md


def test_mailbox_share_writes_the_file_and_the_index(tmp_path):
    root, md = _root(tmp_path)
    r = run_cli(root, "mailbox", "share", "alice@example.com", "Projects", "bob@example.com", "lr")
    assert r.code == 0, r.err
    assert "bob@example.com on Projects of alice@example.com: lr" in r.out
    assert (md.folder_path("Projects") / "dovecot-acl").read_text() == "user=bob@example.com lr\n"
    assert places.shared_folders(root) == [("alice@example.com", "Projects")]
    assert run_cli(root, "mailbox", "share", "alice@example.com", "Projects", "bob@example.com", "+wd").code == 0
    r = run_cli(root, "mailbox", "acl", "alice@example.com", "Projects", "--json")
    assert json.loads(r.out) == [{"who": "user=bob@example.com", "rights": "lrwte"}]
    assert run_cli(root, "mailbox", "share", "alice@example.com", "Projects", "anyone", "l").code == 0
    assert run_cli(root, "mailbox", "share", "alice@example.com", "Projects", "bob@example.com", "none").code == 0
    rows = json.loads(run_cli(root, "mailbox", "acl", "alice@example.com", "Projects", "--json").out)
    assert rows == [{"who": "anyone", "rights": "l"}]
    # the owner's rights: anyone never narrows them (Dovecot's rule)
    assert aclfile.rights_for(aclfile.read(md.folder_path("Projects")), "alice@example.com", True) == \
        frozenset("lrwstipekxa")


def test_mailbox_share_refuses_bad_arguments_in_one_line(tmp_path):
    root, md = _root(tmp_path)
    cases = [
        (("Projects", "nobody@example.com", "lr"), "not an account"),
        (("Projects", "bob@example.com", "lrQ"), "Invalid ACL right"),
        (("Projects", "alice@example.com", "lr"), "owns"),
        (("Nope", "bob@example.com", "lr"), "does not exist"),
        (("../x", "bob@example.com", "lr"), "folder name"),
        (("Projects", "user=bob@example.com", "lr"), "not an account"),
    ]
    for args, text in cases:
        r = run_cli(root, "mailbox", "share", "alice@example.com", *args)
        assert r.code == 1 and text in r.err and "Traceback" not in r.err, (args, r.err)
        assert len(r.err.strip().splitlines()) == 1, r.err
    assert not (md.folder_path("Projects") / "dovecot-acl").exists()


def test_public_add_grant_and_list(tmp_path):
    root, _ = _root(tmp_path)
    r = run_cli(root, "public", "add", "example.com", "Team/Minutes", "--grant", "anyone=lr",
                "--grant", "bob@example.com=lrswite")
    assert r.code == 0, r.err
    tree = places.public_tree(root, "example.com")
    assert (tree.folder_path("Team/Minutes") / "dovecot-acl").read_text() == \
        "anyone lr\nuser=bob@example.com lrwstie\n"
    assert run_cli(root, "public", "grant", "example.com", "Team/Minutes", "anyone", "--", "-r").code == 0
    rows = json.loads(run_cli(root, "public", "list", "example.com", "--json").out)
    assert {"folder": "Team/Minutes", "rights": "anyone=l user=bob@example.com=lrwstie"} in rows
    r = run_cli(root, "public", "add", "example.com", "Empty")
    assert r.code == 0 and "nobody has rights" in r.err + r.out
    for args, text in [(("nowhere.test", "X"), "not a local domain"), (("example.com", "../x"), "folder name"),
                       (("example.com", "X", "--grant", "anyone"), "WHO=RIGHTS"),
                       (("example.com", "X", "--grant", "anyone=lz"), "Invalid ACL right")]:
        r = run_cli(root, "public", "add", *args)
        assert r.code != 0 and text in r.err and "Traceback" not in r.err, (args, r.err)
    r = run_cli(root, "public", "grant", "example.com", "Nope", "anyone", "lr")
    assert r.code == 1 and "does not exist" in r.err
