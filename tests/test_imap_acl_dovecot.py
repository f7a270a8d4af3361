"""Dovecot serving the same root with its ACL plugin (acl = vfile, a shared namespace
"Shared/<user>/" and a public one "Public/" over ROOT/public/<domain>) gives the same
MYRIGHTS as we do, for rights we wrote (SETACL, mailctl) and for dovecot-acl files written
by hand with the cases that decide the rules: a user= entry replacing anyone's rights,
negative rights, an owner matched by anyone (who keeps every right)."""
from __future__ import annotations

import imaplib
import os
import re

import pytest

from engine.acl import places
from engine.maildir import Maildir
from helpers_mail import PASSWORD
from helpers_server import make_root, mailctl, running_server
from tests import dovecot

A, B, C = "a@example.com", "b@example.com", "c@example.com"
SETTINGS = {"auth.failure_delay_s": 0, "auth.allow_plaintext": True, "auth.ban_after_failures": 0,
            "queue.offline": True}

ACL_CONFIG = """
# no METADATA dictionary (tests/dovecot.py sets one in each home): with it Dovecot's
# shared namespace answers NONEXISTENT for every folder of another user
mail_attribute_dict =
mail_plugins = $mail_plugins acl
protocol imap {
  mail_plugins = $mail_plugins imap_acl
}
plugin {
  acl = vfile:cache_secs=0
}
namespace shared {
  type = shared
  separator = /
  prefix = Shared/%%u/
  location = maildir:{root}/mail/%%d/%%n:INDEX={work}/shared/%%u
  subscriptions = no
  list = children
}
namespace public {
  type = public
  separator = /
  prefix = Public/
  location = maildir:{root}/public/%d:INDEX={work}/public/%u
  subscriptions = no
  list = children
}
"""

# folder of a -> its dovecot-acl written by hand (None: rights set by SETACL / mailctl)
HAND_WRITTEN = {
    "Mixed": f"anyone lr\nuser={B} w\n-user={C} r\nowner lrwstipekxa\n",
    "AnyoneOnly": "anyone lr\n",
    "Negative": f"user={B} lrswi\n-user={B} s\nauthenticated l\n",
}
ASKED = [
    (A, "Projects"), (A, "Work"), (A, "Mixed"), (A, "AnyoneOnly"), (A, "Negative"), (A, "INBOX"),
    (B, "Shared/a@example.com/Projects"), (B, "Shared/a@example.com/Work"),
    (B, "Shared/a@example.com/Mixed"), (B, "Shared/a@example.com/AnyoneOnly"),
    (B, "Shared/a@example.com/Negative"), (B, "Shared/a@example.com/INBOX"),
    (C, "Shared/a@example.com/Work"), (C, "Shared/a@example.com/Mixed"),
    (C, "Shared/a@example.com/Negative"),
    (A, "Public/Team"), (B, "Public/Team"), (C, "Public/Team"), (C, "Public/Closed"),
]


def myrights(port: int, user: str, mailbox: str) -> str:
    """What MYRIGHTS answers: the rights, or NO with its response code."""
    c = imaplib.IMAP4("127.0.0.1", port)
    try:
        c.login(user, PASSWORD)
        typ, data = c._simple_command("MYRIGHTS", f'"{mailbox}"')
        if typ != "OK":
            code = re.match(r"\[(\w+)\]", data[0].decode())
            return f"NO {code[1] if code else ''}"
        _, lines = c._untagged_response(typ, data, "MYRIGHTS")
        return lines[0].decode().rsplit(" ", 1)[1]
    finally:
        c.logout()


@pytest.fixture()
def shared_root(tmp_path):
    if not dovecot.available():
        pytest.skip("dovecot is not installed")
    root = make_root(tmp_path, accounts={A: PASSWORD, B: PASSWORD, C: PASSWORD}, settings=SETTINGS)
    for address in (A, B, C):
        local, domain = address.split("@")
        Maildir.for_account(root, domain, local).create()
    md = Maildir.for_account(root, "example.com", "a")
    for name in ("Projects", "Work", *HAND_WRITTEN):
        md.create_folder(name)
        md.deliver(b"Subject: x\n\nbody\n", folder=name)
    for name, text in HAND_WRITTEN.items():
        (md.folder_path(name) / "dovecot-acl").write_text(text)
    (md.path / "dovecot-acl").write_text(f"user={B} lr\n")       # INBOX, by hand too
    assert mailctl(root, "mailbox", "share", A, "Work", B, "lrswite").returncode == 0
    assert mailctl(root, "public", "add", "example.com", "Team", "--grant", "anyone=lr",
                   "--grant", f"{B}=lrswite").returncode == 0
    assert mailctl(root, "public", "add", "example.com", "Closed").returncode == 0
    return root


def _lend_public(root, uid: int, gid: int) -> None:
    if os.getuid() != 0:
        return
    top = root.path / places.PUBLIC_DIR
    for dirpath, _dirs, filenames in os.walk(top):
        os.chown(dirpath, uid, gid)
        for n in filenames:
            os.chown(os.path.join(dirpath, n), uid, gid, follow_symlinks=False)


def test_dovecot_gives_the_same_myrights(shared_root):
    root = shared_root
    with running_server(root) as ours:
        # SETACL through our server, before Dovecot reads the tree
        c = imaplib.IMAP4("127.0.0.1", ours.ports["imap"])
        c.login(A, PASSWORD)
        assert c._simple_command("SETACL", "Projects", B, "lr")[0] == "OK"
        c.logout()
        mine = {(u, m): myrights(ours.ports["imap"], u, m) for u, m in ASKED}
    import pwd
    with dovecot.dovecot_server(root.path, {A: PASSWORD, B: PASSWORD, C: PASSWORD},
                                extra_config=ACL_CONFIG) as dc:
        pw = pwd.getpwnam(dc.mail_user)
        _lend_public(root, pw.pw_uid, pw.pw_gid)
        try:
            theirs = {(u, m): myrights(dc.imap_port, u, m) for u, m in ASKED}
        finally:
            _lend_public(root, 0, 0)
    assert mine == theirs, dc.log_text()[-3000:]
    # and the answers are the ones the rules give (not both servers wrong the same way)
    assert mine[(B, "Shared/a@example.com/Mixed")] == "w"          # user= replaces anyone
    assert mine[(C, "Shared/a@example.com/Mixed")] == "l"          # anyone lr, minus r
    assert mine[(A, "AnyoneOnly")] == "lrwstipekxacd"               # anyone never narrows the owner
    assert mine[(B, "Shared/a@example.com/Negative")] == "lrwi"      # lrswi minus s
    assert mine[(B, "Shared/a@example.com/Work")] == "lrwstied"
    assert mine[(C, "Public/Team")] == "lr"
