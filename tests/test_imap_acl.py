"""Shared mailboxes with ACLs (RFC 4314) and the Shared/ and Public/ namespaces (RFC 2342):
two accounts in two sessions, rights set over IMAP and by `mailctl`, enforced on every
command that touches a mailbox (engine/imap/access.py)."""
from __future__ import annotations

import json
import re
import time

import pytest

from engine.maildir import Maildir
from helpers_mail import PASSWORD
from helpers_raw import Raw
from helpers_server import IMAP4From, make_root, mailctl, running_server, serve_process, wait_for_processes

A, B, C, X = "a@example.com", "b@example.com", "c@example.com", "x@other.test"
PROJ = b"Shared/a@example.com/Projects"
SETTINGS = {"auth.failure_delay_s": 0, "auth.allow_plaintext": True, "auth.ban_after_failures": 0,
            "queue.offline": True}
MSG = b"From: a@example.com\r\nSubject: plan\r\n\r\nthe plan\r\n"


@pytest.fixture()
def srv(tmp_path):
    root = make_root(tmp_path, domains=("example.com", "other.test"),
                     accounts={A: PASSWORD, B: PASSWORD, C: PASSWORD, X: PASSWORD}, settings=SETTINGS)
    with running_server(root) as server:
        yield server


def owner_tree(srv, address=A) -> Maildir:
    local, domain = address.split("@")
    md = Maildir.for_account(srv.root, domain, local)
    if not md.exists():
        md.create()
    return md


def session(srv, address) -> Raw:
    r = Raw(srv.ports["imap"])
    r.login(address)
    return r


def run(r: Raw, text: bytes, tag: bytes = b"t1") -> list[bytes]:
    r.send(tag + b" " + text + b"\r\n")
    return r.until_tag(tag)


def projects(srv, rights: str) -> tuple[Raw, Maildir]:
    """a's folder Projects with one message, shared with b by a's own SETACL."""
    md = owner_tree(srv)
    md.create_folder("Projects")
    md.deliver(MSG.replace(b"\r\n", b"\n"), folder="Projects")
    a = session(srv, A)
    assert run(a, f"SETACL Projects {B} {rights}".encode())[-1] == b"t1 OK Setacl complete"
    return a, md


def test_lr_sees_and_reads_but_cannot_store_expunge_or_append(srv):
    a, md = projects(srv, "lr")
    b = session(srv, B)
    assert run(b, b'LIST "" "*"')[:-1].count(b'* LIST (\\HasNoChildren) "/" ' + PROJ) == 1
    assert run(b, b"MYRIGHTS " + PROJ)[0] == b"* MYRIGHTS " + PROJ + b" lr"
    assert run(b, b"STATUS " + PROJ + b" (MESSAGES)")[0] == b"* STATUS " + PROJ + b" (MESSAGES 1)"
    lines = run(b, b"SELECT " + PROJ)
    assert lines[-1] == b"t1 OK [READ-ONLY] SELECT completed"
    assert b"* OK [PERMANENTFLAGS ()] Flags permitted" in lines
    fetched = run(b, b"FETCH 1 BODY[]")
    assert b"the plan" in b"".join(fetched) and fetched[-1].startswith(b"t1 OK")
    assert run(b, b"STORE 1 +FLAGS (\\Deleted)")[-1].startswith(b"t1 NO")
    assert run(b, b"EXPUNGE")[-1].startswith(b"t1 NO")
    assert run(b, b"APPEND " + PROJ + b" {3+}\r\nx\r\n")[-1].startswith(b"t1 NO [NOPERM]")
    assert run(b, b"MOVE 1 INBOX")[-1].startswith(b"t1 NO")
    assert run(b, b"COPY 1 INBOX")[-1].startswith(b"t1 OK [COPYUID")       # reading is enough to copy out
    assert run(b, b"SETACL " + PROJ + f" {C} lr".encode())[-1].startswith(b"t1 NO")   # no a right
    assert run(b, b"DELETE " + PROJ)[-1].startswith(b"t1 NO [NOPERM]")
    msgs = md.folder("Projects").sync()
    assert len(msgs) == 1 and msgs[0].flags == frozenset()        # FETCH BODY[] set no \Seen
    a.close()
    b.close()


def test_lrswite_can_store_expunge_append_and_a_sees_it(srv):
    a, md = projects(srv, "lrswite")
    assert run(a, b"SELECT Projects")[-1].startswith(b"t1 OK")
    b = session(srv, B)
    assert run(b, b"MYRIGHTS " + PROJ)[0] == b"* MYRIGHTS " + PROJ + b" lrwstied"
    lines = run(b, b"SELECT " + PROJ)
    assert lines[-1] == b"t1 OK [READ-WRITE] SELECT completed"
    assert run(b, b"STORE 1 +FLAGS (\\Deleted)")[-1] == b"t1 OK STORE completed"
    assert run(b, b"EXPUNGE")[:-1] == [b"* 1 EXPUNGE"]
    assert b"* 1 EXPUNGE" in run(a, b"NOOP")
    assert run(b, b"APPEND " + PROJ + b" (\\Seen) {3+}\r\nx\r\n")[-1].startswith(b"t1 OK [APPENDUID")
    assert [m.flags for m in md.folder("Projects").sync()] == [frozenset({"\\Seen"})]
    assert run(b, b"CREATE " + PROJ + b"/Sub")[-1].startswith(b"t1 NO [NOPERM]")    # no k
    a.close()
    b.close()


def test_store_needs_the_right_of_each_flag(srv):
    a, md = projects(srv, "lrs")
    b = session(srv, B)
    lines = run(b, b"SELECT " + PROJ)
    assert lines[-1] == b"t1 OK [READ-WRITE] SELECT completed"
    assert b"* OK [PERMANENTFLAGS (\\Seen)] Flags permitted" in lines
    assert run(b, b"STORE 1 +FLAGS (\\Flagged)")[-1].startswith(b"t1 NO [NOPERM]")
    assert run(b, b"STORE 1 +FLAGS (\\Deleted)")[-1].startswith(b"t1 NO [NOPERM]")
    assert run(b, b"STORE 1 FLAGS (\\Seen)")[-1].startswith(b"t1 NO [NOPERM]")    # replaces every kind
    assert run(b, b"STORE 1 +FLAGS ($Label)")[-1].startswith(b"t1 NO [NOPERM]")
    assert run(b, b"STORE 1 +FLAGS (\\Seen)")[-1] == b"t1 OK STORE completed"
    assert run(b, b"STORE 1 -FLAGS (\\Seen)")[-1] == b"t1 OK STORE completed"
    assert run(b, b"FETCH 1 BODY[]")[-1].startswith(b"t1 OK")        # s: reading sets \Seen
    assert run(b, b"SEARCH SEEN")[0] == b"* SEARCH 1"                 # b's own \Seen (privateseen.py)
    assert [m.flags for m in md.folder("Projects").sync()] == [frozenset()]   # not the owner's
    assert run(b, b"EXPUNGE")[-1].startswith(b"t1 NO [NOPERM]")
    assert run(b, b"CLOSE")[-1].startswith(b"t1 OK")
    a.close()
    b.close()


def test_no_rights_means_the_mailbox_does_not_exist(srv):
    a, md = projects(srv, "lr")
    c = session(srv, C)
    for cmd in (b"SELECT ", b"EXAMINE ", b"MYRIGHTS ", b"GETACL ", b"DELETE "):
        assert run(c, cmd + PROJ)[-1].startswith(b"t1 NO [NONEXISTENT]"), cmd
    assert run(c, b"STATUS " + PROJ + b" (MESSAGES)")[-1].startswith(b"t1 NO [NONEXISTENT]")
    assert run(c, b"APPEND " + PROJ + b" {3+}\r\nx\r\n")[-1].startswith(b"t1 NO [NONEXISTENT]")
    assert not any(b"Shared" in line for line in run(c, b'LIST "" "*"'))
    # the same answer as for a folder that is not there at all: nothing to probe
    assert run(c, b'SELECT "Shared/a@example.com/Nothing"')[-1].startswith(b"t1 NO [NONEXISTENT]")
    a.close()
    c.close()


def test_rights_taken_away_end_the_session_that_had_the_mailbox_selected(srv):
    a, md = projects(srv, "lr")
    b = session(srv, B)
    assert run(b, b"SELECT " + PROJ)[-1].startswith(b"t1 OK")
    assert run(a, f"DELETEACL Projects {B}".encode())[-1] == b"t1 OK Deleteacl complete"
    lines = run(b, b"FETCH 1 BODY[]")
    assert lines[0].startswith(b"* BYE") and lines[-1].startswith(b"t1 NO [NOPERM]")
    assert not any(b"the plan" in line for line in lines)
    a.close()


def test_idle_on_a_shared_folder_hears_deliveries_and_ends_when_rights_go(srv):
    a, md = projects(srv, "lr")
    b = session(srv, B)
    assert run(b, b"SELECT " + PROJ)[-1].startswith(b"t1 OK")
    b.send(b"i1 IDLE\r\n")
    assert b.line().startswith(b"+")
    md.deliver(b"Subject: two\n\nsecond\n", folder="Projects")
    assert b.line() == b"* 2 EXISTS"
    assert run(a, f"SETACL Projects {B} l".encode())[-1].startswith(b"t1 OK")
    lines = b.until_tag(b"i1")
    assert lines[-2].startswith(b"* BYE") and lines[-1].startswith(b"i1 NO [NOPERM]")
    assert all(not line.startswith(b"* 3") for line in lines)
    a.close()


def test_copy_and_move_across_owners(srv):
    a, md = projects(srv, "lri")
    b = session(srv, B)
    owner_tree(srv, B).deliver(b"Subject: from b\n\nbody\n", flags=("\\Flagged", "\\Seen"))
    assert run(b, b"SELECT INBOX")[-1].startswith(b"t1 OK")
    # i without s, w: the copy is made, its flags are not
    assert run(b, b"COPY 1 " + PROJ)[-1].startswith(b"t1 OK [COPYUID")
    copies = md.folder("Projects").sync()
    assert len(copies) == 2 and copies[1].flags == frozenset()
    # MOVE out of a's folder needs t and e there
    assert run(b, b"SELECT " + PROJ)[-1].startswith(b"t1 OK")
    assert run(b, b"MOVE 1 INBOX")[-1].startswith(b"t1 NO")
    assert len(md.folder("Projects").sync()) == 2
    # the copy counts against the owner's quota, not b's (Maildir quota of a)
    a.close()
    b.close()


def test_public_folders_with_anyone_rights(srv):
    root = srv.root
    out = mailctl(root, "public", "add", "example.com", "Team", "--grant", "anyone=lr")
    assert out.returncode == 0, out.stderr
    out = mailctl(root, "public", "grant", "example.com", "Team", B, "lrswite")
    assert out.returncode == 0, out.stderr
    a, b, x = session(srv, A), session(srv, B), session(srv, X)
    assert b'* LIST (\\HasNoChildren) "/" Public/Team' in run(a, b'LIST "" "*"')
    assert run(a, b"MYRIGHTS Public/Team")[0] == b"* MYRIGHTS Public/Team lr"
    assert run(b, b"MYRIGHTS Public/Team")[0] == b"* MYRIGHTS Public/Team lrwstied"
    assert run(a, b"APPEND Public/Team {3+}\r\nx\r\n")[-1].startswith(b"t1 NO [NOPERM]")
    assert run(b, b"APPEND Public/Team {3+}\r\nx\r\n")[-1].startswith(b"t1 OK")
    assert run(a, b"SELECT Public/Team")[-1] == b"t1 OK [READ-ONLY] SELECT completed"
    assert run(a, b"FETCH 1 BODY[]")[-1].startswith(b"t1 OK")
    # a user of another domain sees its own domain's public folders only
    assert not any(b"Public" in line for line in run(x, b'LIST "" "*"'))
    assert run(x, b"SELECT Public/Team")[-1].startswith(b"t1 NO [NONEXISTENT]")
    # nobody owns a public folder; anyone may not be given rights over IMAP
    assert run(b, b"SETACL Public/Team anyone lrswipkxtea")[-1].startswith(b"t1 BAD")
    assert run(b, b"SETACL Public/Team owner lr")[-1] == b"t1 NO Public namespaces have no owner"
    for s in (a, b, x):
        s.close()


def test_namespace_and_the_owner_keeps_every_right(srv):
    a, md = projects(srv, "lr")
    assert run(a, b"NAMESPACE")[0] == b'* NAMESPACE (("" "/")) (("Shared/" "/")) (("Public/" "/"))'
    assert run(a, b"MYRIGHTS Projects")[0] == b"* MYRIGHTS Projects lrwstipekxacd"
    assert run(a, b"GETACL Projects")[0] == b"* ACL Projects b@example.com lr a@example.com lrwstipekxacd"
    assert run(a, f"SETACL Projects {A} lr".encode())[-1].startswith(b"t1 NO [CANNOT]")
    assert run(a, b"SETACL Projects owner lr")[-1].startswith(b"t1 NO [CANNOT]")
    assert run(a, b"LISTRIGHTS Projects b@example.com")[0] == \
        b'* LISTRIGHTS Projects b@example.com "" l r w s t p i e k x a c d'
    assert (md.folder_path("Projects") / "dovecot-acl").read_text() == f"user={B} lr\n"
    a.close()


def test_shared_folder_created_below_inherits_rights(srv):
    a, md = projects(srv, "lrk")
    b = session(srv, B)
    assert run(b, b'CREATE "Shared/a@example.com/Projects/Sub"')[-1].startswith(b"t1 OK")
    assert (md.folder_path("Projects/Sub") / "dovecot-acl").read_text() == f"user={B} lrk\n"
    assert b'* LIST (\\HasNoChildren) "/" Shared/a@example.com/Projects/Sub' in run(b, b'LIST "" "*"')
    assert run(b, b'CREATE "Shared/a@example.com/Top"')[-1].startswith(b"t1 NO [NOPERM]")
    a.close()
    b.close()


def _who_pid(root, ip: str) -> int:
    data = json.loads(mailctl(root, "who", "--json").stdout)
    sessions = data["sessions"] if isinstance(data, dict) else data
    return next(s["pid"] for s in sessions if s["ip"] == ip)


def test_rights_set_in_one_serving_process_count_in_another(tmp_path):
    root = make_root(tmp_path, accounts={A: PASSWORD, B: PASSWORD}, settings={**SETTINGS, "server.processes": 2})
    md = Maildir.for_account(root, "example.com", "a")
    md.create()
    md.create_folder("Projects")
    md.deliver(b"Subject: plan\n\nx\n", folder="Projects")
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        port = proc.ports["imap"]
        a = IMAP4From("127.0.0.2", port)
        a.login(A, PASSWORD)
        pid_a = _who_pid(root, "127.0.0.2")
        b = None
        for n in range(3, 40):
            c = IMAP4From(f"127.0.0.{n}", port)
            c.login(B, PASSWORD)
            if _who_pid(root, f"127.0.0.{n}") != pid_a:
                b = c
                break
            c.logout()
        assert b is not None, "no session of b in the other serving process"
        assert b.select('"Shared/a@example.com/Projects"')[0] == "NO"
        assert a._simple_command("SETACL", "Projects", B, "lr")[0] == "OK"
        assert b.select('"Shared/a@example.com/Projects"', readonly=True)[0] == "OK"
        assert a._simple_command("SETACL", "Projects", B, "lrswite")[0] == "OK"
        typ, _ = b.store("1", "+FLAGS", "(\\Flagged)")
        assert typ == "NO"                      # EXAMINE'd: read-only whatever the rights
        b.close()
        assert b.select('"Shared/a@example.com/Projects"')[0] == "OK"
        assert b.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(m.flags for m in md.folder("Projects").sync()):
            time.sleep(0.05)
        assert [m.flags for m in md.folder("Projects").sync()] == [frozenset({"\\Flagged"})]
        a.logout()
        b.logout()


def test_no_reply_names_a_server_path(srv):
    a, md = projects(srv, "lr")
    b = session(srv, B)
    lines = []
    for cmd in (b"SELECT " + PROJ, b'SELECT "Shared/a@example.com/../../../etc"', b"MYRIGHTS Public/Nope",
                b"GETACL " + PROJ, b'STATUS "Shared/../x" (MESSAGES)'):
        lines += run(b, cmd)
    assert not any(re.search(rb"/(mail|tmp|root)/", line) for line in lines), lines
    a.close()
    b.close()


def test_reading_sets_seen_only_with_the_s_right(srv):
    a, md = projects(srv, "lrw")
    b = session(srv, B)
    assert run(b, b"SELECT " + PROJ)[-1] == b"t1 OK [READ-WRITE] SELECT completed"
    assert run(b, b"FETCH 1 BODY[]")[-1].startswith(b"t1 OK")
    assert run(b, b"STORE 1 +FLAGS ($Label)")[-1] == b"t1 OK STORE completed"
    assert [m.flags for m in md.folder("Projects").sync()] == [frozenset({"$Label"})]
    a.close()
    b.close()


def test_rename_and_delete_in_a_shared_tree_need_x_and_k(srv):
    a, md = projects(srv, "lrk")
    md.create_folder("Projects/Old")
    assert run(a, f"SETACL Projects/Old {B} lr".encode())[-1].startswith(b"t1 OK")
    b = session(srv, B)
    assert run(b, b"RENAME " + PROJ + b"/Old " + PROJ + b"/New")[-1].startswith(b"t1 NO [NOPERM]")   # no x
    assert run(a, f"SETACL Projects/Old {B} lrx".encode())[-1].startswith(b"t1 OK")
    assert run(b, b"RENAME " + PROJ + b"/Old INBOX/Mine")[-1].startswith(b"t1 NO [CANNOT]")  # to another owner
    assert run(b, b"RENAME " + PROJ + b"/Old " + PROJ + b"/New")[-1] == b"t1 OK RENAME completed"
    assert md.folder("Projects/New")
    assert run(b, b"GETQUOTAROOT " + PROJ)[0] == b"* QUOTAROOT " + PROJ
    assert run(b, b"DELETE " + PROJ + b"/New")[-1] == b"t1 OK DELETE completed"
    assert run(b, b"SUBSCRIBE " + PROJ)[-1].startswith(b"t1 NO [CANNOT]")
    a.close()
    b.close()
