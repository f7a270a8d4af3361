"""The POP3 paths made for large mailboxes: LIST/UIDL/STAT answered from the session's
arrays (with messages marked deleted left out, kept UIDLs mixed in), and a snapshot
shared with the next login only while the Maildir is unchanged."""
from __future__ import annotations

import os
import poplib
import time

import pytest

from engine.maildir import MTIME_SLACK
from engine.pop3 import maildrop as pop3_maildrop
from helpers_mail import PASSWORD, box, mailserver, message, user  # noqa: F401 - pytest fixtures, used as test arguments


def pop(srv, address):
    p = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=20)
    p.user(address)
    p.pass_(PASSWORD)
    return p


def fill(srv, address, n):
    md = box(srv, address)
    for i in range(n):
        md.deliver(message(f"msg {i}", body="x" * (10 * i) + f"\nline {i}"))
    return md


def expected(md):
    folder = md.folder("INBOX")
    msgs = folder.sync()
    validity = folder.uidvalidity()
    return msgs, [f"{m.uid:08x}{validity:08x}" for m in msgs]


def settle():
    """Let the directory times age past the snapshot's coarse-clock margin."""
    time.sleep(MTIME_SLACK * 2 + 0.02)


def snapshot_of(md):
    return pop3_maildrop._SNAPSHOTS.peek(str(md.folder("INBOX").path))


def settled_snapshot(srv, address, md):
    """The snapshot a login makes once the directory times have aged (so it may be reused)."""
    settle()
    pop(srv, address).quit()
    return snapshot_of(md)


def keep_uidls(md, kept: dict[int, str]) -> None:
    """Give the records of some UIDs a P field, rewriting the uidlist as Dovecot does."""
    path = md.path / "dovecot-uidlist"
    header, *lines = path.read_text().split("\n")       # the header starts "3 V...": skipped
    for i, line in enumerate(lines):
        uid = line.partition(" ")[0]
        if uid.isdigit() and int(uid) in kept:
            lines[i] = f"{uid} P{kept[int(uid)]} " + line[len(uid) + 1:]
    lines.insert(0, header)
    (md.path / "uidlist.new").write_text("\n".join(lines))
    (md.path / "uidlist.new").rename(path)


def test_list_uidl_stat_leave_out_deleted_messages(mailserver, user):
    md = fill(mailserver, user, 5)
    msgs, uidls = expected(md)
    p = pop(mailserver, user)
    assert p.stat() == (5, sum(m.vsize for m in msgs))
    assert p.list()[1] == [f"{i} {m.vsize}".encode() for i, m in enumerate(msgs, 1)]
    assert p.uidl()[1] == [f"{i} {u}".encode() for i, u in enumerate(uidls, 1)]
    p.dele(2)
    p.dele(4)
    live = [1, 3, 5]
    assert p.stat() == (3, sum(msgs[i - 1].vsize for i in live))
    assert p.list()[1] == [f"{i} {msgs[i - 1].vsize}".encode() for i in live]
    assert p.uidl()[1] == [f"{i} {uidls[i - 1]}".encode() for i in live]
    assert p.list(3) == f"+OK 3 {msgs[2].vsize}".encode()
    assert p.uidl(5) == f"+OK 5 {uidls[4]}".encode()
    for cmd in ("LIST 2", "UIDL 4", "LIST 6", "UIDL 0"):
        with pytest.raises(poplib.error_proto):
            p._shortcmd(cmd)
    for n in (1, 3, 5):
        p.dele(n)
    assert p.stat() == (0, 0)
    assert p.list()[1] == [] and p.uidl()[1] == []
    p.rset()
    assert p.stat() == (5, sum(m.vsize for m in msgs))
    assert p.uidl()[1] == [f"{i} {u}".encode() for i, u in enumerate(uidls, 1)]
    p.quit()


def test_kept_uidls_mix_with_default_ones_and_deletions(mailserver, user):
    md = fill(mailserver, user, 4)
    msgs, uidls = expected(md)
    # the second is longer than RFC 1939 allows: not used
    keep_uidls(md, {msgs[1].uid: "old-server-uidl-2", msgs[2].uid: "y" * 71})
    p = pop(mailserver, user)
    want = [uidls[0], "old-server-uidl-2", uidls[2], uidls[3]]
    assert p.uidl()[1] == [f"{i} {u}".encode() for i, u in enumerate(want, 1)]
    assert p.uidl(2) == b"+OK 2 old-server-uidl-2"
    assert p.uidl(3) == f"+OK 3 {uidls[2]}".encode()
    p.dele(1)
    assert p.uidl()[1] == [f"{i} {want[i - 1]}".encode() for i in (2, 3, 4)]
    p.rset()
    p.quit()


def test_empty_mailbox(mailserver, user):
    box(mailserver, user).create()
    p = pop(mailserver, user)
    assert p.stat() == (0, 0)
    assert p.list()[1] == [] and p.uidl()[1] == []
    p.quit()


def test_snapshot_reused_only_while_the_maildir_is_unchanged(mailserver, user):
    md = fill(mailserver, user, 3)
    settle()
    p = pop(mailserver, user)
    first = snapshot_of(md)
    listed, uidls = p.list()[1], p.uidl()[1]
    p.quit()
    p = pop(mailserver, user)                   # nothing changed: the same snapshot
    assert snapshot_of(md) is first
    assert p.list()[1] == listed and p.uidl()[1] == uidls
    p.quit()

    md.deliver(message("late", body="arrived between sessions"))    # new/ changes
    p = pop(mailserver, user)
    assert snapshot_of(md) is not first and p.stat()[0] == 4
    assert p.uidl()[1][:3] == uidls
    p.quit()

    second = settled_snapshot(mailserver, user, md)
    folder = md.folder("INBOX")
    gone = folder.sync()[0]
    os.unlink(gone.path)                        # removed by another program: cur/ or new/ changes
    p = pop(mailserver, user)
    assert snapshot_of(md) is not second
    assert p.stat()[0] == 3
    _, now = expected(md)
    assert now[:2] == [u.split()[1].decode() for u in uidls[1:]]
    assert p.uidl()[1] == [f"{i} {u}".encode() for i, u in enumerate(now, 1)]
    p.quit()

    third = settled_snapshot(mailserver, user, md)
    msgs = folder.sync()
    keep_uidls(md, {msgs[0].uid: "kept-after-the-fact"})     # only the uidlist changes
    p = pop(mailserver, user)
    assert snapshot_of(md) is not third
    assert p.uidl(1) == b"+OK 1 kept-after-the-fact"
    p.quit()


def test_snapshot_not_reused_after_a_flag_change_or_our_own_deletion(mailserver, user):
    md = fill(mailserver, user, 3)
    settle()
    p = pop(mailserver, user)
    uidls = p.uidl()[1]
    p.quit()
    before = settled_snapshot(mailserver, user, md)
    folder = md.folder("INBOX")
    folder.set_flags(folder.sync()[0], {"\\Seen"})     # a rename by an IMAP client
    p = pop(mailserver, user)
    assert snapshot_of(md) is not before
    assert p.uidl()[1] == uidls
    assert b"Subject: msg 0" in p.retr(1)[1]    # read from the renamed file
    p.dele(1)
    p.quit()
    p = pop(mailserver, user)                   # our own expunge is seen at once
    assert p.stat()[0] == 2
    assert p.uidl()[1] == [f"{i} {u.split()[1].decode()}".encode() for i, u in enumerate(uidls[1:], 1)]
    p.quit()
