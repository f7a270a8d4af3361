"""Hostile input to the ACL code: SETACL with identifiers and rights strings that are junk,
names that try to climb out of the shared and public namespaces, and dovecot-acl files
edited by hand (garbage lines are skipped and logged, never fatal; a link is never
followed)."""
from __future__ import annotations

import logging
import os

import pytest

from engine.acl import aclfile
from test_imap_acl import A, B, PROJ, owner_tree, projects, run, session, srv  # noqa: F401 - srv: fixture


@pytest.mark.parametrize("ident, answer", [
    (b"anyone", b"t1 BAD"), (b"authenticated", b"t1 BAD"), (b"$staff", b"t1 BAD"), (b"!$off", b"t1 BAD"),
    (b"#global", b"t1 BAD"), (b'""', b"t1 BAD"), (b"nosuch@example.com", b"t1 NO"),
    (b'"b@example.com lrswipkxtea"', b"t1 NO"), (b'"user=b@example.com"', b"t1 NO"),
    (b'"b@example.com\\\\"', b"t1 NO"), (b"owner", b"t1 NO [CANNOT]"), (b"a@example.com", b"t1 NO [CANNOT]"),
])
def test_setacl_with_a_bad_identifier_changes_nothing(srv, ident, answer):
    md = owner_tree(srv)
    md.create_folder("Projects")
    a = session(srv, A)
    assert run(a, b"SETACL Projects " + ident + b" lr")[-1].startswith(answer)
    assert run(a, b"DELETEACL Projects " + ident)[-1].startswith(answer[:5])
    assert not (md.folder_path("Projects") / "dovecot-acl").exists()
    a.close()


@pytest.mark.parametrize("rights", [b"lrz", b"lr\\\\", b'"l r"', b"+q", b"-\xff", b"l" * 70, b"LR"])
def test_setacl_with_junk_rights_changes_nothing(srv, rights):
    md = owner_tree(srv)
    md.create_folder("Projects")
    a = session(srv, A)
    assert run(a, b"SETACL Projects b@example.com " + rights)[-1].startswith(b"t1 BAD")
    assert not (md.folder_path("Projects") / "dovecot-acl").exists()
    assert run(a, b"SETACL Projects b@example.com cd")[-1].startswith(b"t1 OK")     # obsolete letters
    assert aclfile.read(md.folder_path("Projects"))[0].rights == frozenset("kxet")
    a.close()


@pytest.mark.parametrize("name", [
    b'"Shared/../x"', b'"Shared/a@example.com/../INBOX"', b'"Shared/a@example.com/.."',
    b'"Shared/a@example.com/Projects/../../b@example.com/INBOX"', b'"Public/../../etc"', b'"Public/.."',
    b'"Shared/a@example.com"', b'"Shared/a@example.com/"', b'"Shared/../../mail/example.com/a/INBOX"',
    b'"Shared/a@example.com/.Projects"', b'"Shared/a@..@example.com/INBOX"', b'"Public/INBOX"',
    b'"Shared/a@example.com/Projects\\\\x"',
])
def test_names_that_climb_out_reach_nothing(srv, name):
    a, md = projects(srv, "lrswipkxtea")
    b = session(srv, B)
    for cmd in (b"SELECT ", b"MYRIGHTS ", b"GETACL ", b"DELETE "):
        reply = run(b, cmd + name)[-1]
        assert reply.startswith(b"t1 NO") or reply.startswith(b"t1 BAD"), (cmd, reply)
    assert run(b, b"STATUS " + name + b" (MESSAGES)")[-1][:5] in (b"t1 NO", b"t1 BA")
    assert run(b, b"SETACL " + name + b" c@example.com lr")[-1][:5] in (b"t1 NO", b"t1 BA")
    assert md.folder("Projects").sync()          # still there
    a.close()
    b.close()


def test_a_hand_edited_file_with_garbage_lines_keeps_its_good_lines(srv, caplog):
    md = owner_tree(srv)
    md.create_folder("Projects")
    md.deliver(b"Subject: x\n\nbody\n", folder="Projects")
    (md.folder_path("Projects") / "dovecot-acl").write_bytes(
        b"# edited by hand\n\ngarbage\nuser= lr\nuser=b@example.com lrz\n\x00\xff\xfe\nowner\n"
        b"user=c@example.com\tlr\nuser=b@example.com lr :unknown-named-right\n" + b"x" * 5000 + b"\n")
    b = session(srv, B)
    with caplog.at_level(logging.WARNING, logger="mailctl.acl"):
        assert run(b, b"MYRIGHTS " + PROJ)[0] == b"* MYRIGHTS " + PROJ + b" lr"
        assert run(b, b"SELECT " + PROJ)[-1] == b"t1 OK [READ-ONLY] SELECT completed"
    assert "line skipped" in caplog.text
    a = session(srv, A)
    assert run(a, b"MYRIGHTS Projects")[0] == b"* MYRIGHTS Projects lrwstipekxacd"
    a.close()
    b.close()


def test_a_link_or_a_directory_as_the_file_gives_others_nothing(srv, tmp_path):
    a, md = projects(srv, "lr")
    path = md.folder_path("Projects") / "dovecot-acl"
    outside = tmp_path / "planted-acl"
    outside.write_text(f"user={B} lrswipkxtea\n")
    path.unlink()
    os.symlink(outside, path)
    b = session(srv, B)
    assert run(b, b"SELECT " + PROJ)[-1].startswith(b"t1 NO [NONEXISTENT]")
    assert run(a, b"MYRIGHTS Projects")[0] == b"* MYRIGHTS Projects lrwstipekxacd"
    path.unlink()
    path.mkdir()
    assert run(b, b"MYRIGHTS " + PROJ)[-1].startswith(b"t1 NO [NONEXISTENT]")
    a.close()
    b.close()


def test_a_shared_folder_that_is_a_link_is_not_followed(srv, tmp_path):
    a, md = projects(srv, "lr")
    victim = owner_tree(srv, "c@example.com")
    victim.deliver(b"Subject: secret of c\n\nsecret\n")
    real = md.folder_path("Projects")
    os.rename(real, tmp_path / "moved")
    os.symlink(victim.path, real)
    (tmp_path / "moved" / "dovecot-acl").rename(victim.path / "dovecot-acl")   # rights "there" too
    b = session(srv, B)
    lines = run(b, b"SELECT " + PROJ)
    assert lines[-1].startswith(b"t1 NO"), lines
    assert not any(b"secret" in line for line in run(b, b"FETCH 1 BODY[]"))
    a.close()
    b.close()
