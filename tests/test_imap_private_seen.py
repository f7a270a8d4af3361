"""\\Seen per user on shared and public folders (Dovecot's INDEXPVT): a user who does not
own a folder reads and sets \\Seen in their own record (engine/maildir/seenrecord.py),
the owner keeps it in the file name. Owner a, users b and c, real sessions."""
from __future__ import annotations

import os
import re
import time

import pytest

from engine.maildir import Maildir, seen_record_file
from helpers_mail import PASSWORD
from helpers_raw import Raw
from helpers_server import IMAP4From, make_root, mailctl, running_server, serve_process, wait_for_processes

A, B, C = "a@example.com", "b@example.com", "c@example.com"
PROJ = b"Shared/a@example.com/Projects"
SETTINGS = {"auth.failure_delay_s": 0, "auth.allow_plaintext": True, "auth.ban_after_failures": 0,
            "queue.offline": True}
MSG = b"From: a@example.com\nSubject: plan\n\nthe plan\n"


@pytest.fixture()
def srv(tmp_path):
    root = make_root(tmp_path, accounts={A: PASSWORD, B: PASSWORD, C: PASSWORD}, settings=SETTINGS)
    with running_server(root) as server:
        yield server


def session(srv, address) -> Raw:
    r = Raw(srv.ports["imap"])
    r.login(address)
    return r


def run(r: Raw, text: bytes, tag: bytes = b"t1") -> list[bytes]:
    r.send(tag + b" " + text + b"\r\n")
    return r.until_tag(tag)


def owner_folder(root, count=3, rights=("b@example.com lrswite", "c@example.com lrswite")) -> Maildir:
    md = Maildir.for_account(root, "example.com", "a")
    if not md.exists():
        md.create()
    md.create_folder("Projects")
    for _ in range(count):
        md.deliver(MSG, folder="Projects")
    (md.folder_path("Projects") / "dovecot-acl").write_text("".join(f"user={r}\n" for r in rights))
    md.folder("Projects").sync()       # its dovecot-uidlist made
    settle(md.folder_path("Projects"))
    return md


def settle(path) -> None:
    """The folder's times well in the past, so a session's scan is settled: only a new
    stamp (the user's record included) makes it look again, not the coarse clock."""
    for name in ("new", "cur", "dovecot-uidlist"):
        if (path / name).exists():
            past = time.time() - 60
            os.utime(path / name, (past, past))


def flags_of(r: Raw, box: bytes, examine=True) -> dict[int, bytes]:
    run(r, (b"EXAMINE " if examine else b"SELECT ") + box)
    lines = run(r, b"FETCH 1:* (UID FLAGS)")
    return {int(m.group(1)): m.group(2) for m in (re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", x) for x in lines) if m}


def unseen_search(r: Raw) -> bytes:
    return next(x for x in run(r, b"SEARCH UNSEEN") if x.startswith(b"* SEARCH"))


def test_body_fetch_seen_is_the_readers_own(srv):
    md = owner_folder(srv.root)
    a, b, c = session(srv, A), session(srv, B), session(srv, C)
    assert run(b, b"SELECT " + PROJ)[-1].startswith(b"t1 OK [READ-WRITE]")
    got = b"".join(run(b, b"FETCH 2 BODY[]"))
    assert b"the plan" in got and b"\\Seen" in got
    assert flags_of(b, PROJ, examine=False)[2] == b"\\Seen"
    assert b"\\Seen" not in b"".join(flags_of(c, PROJ).values())
    assert b"\\Seen" not in b"".join(flags_of(a, b"Projects").values())
    assert all("\\Seen" not in m.flags for m in md.folder("Projects").sync())   # file names untouched
    # c's own, by STORE; b's and a's stay as they were
    run(c, b"SELECT " + PROJ)
    assert run(c, b"STORE 1 +FLAGS (\\Seen)")[0] == b"* 1 FETCH (FLAGS (\\Seen))"
    assert unseen_search(c) == b"* SEARCH 2 3"
    run(b, b"NOOP")
    assert unseen_search(b) == b"* SEARCH 1 3"
    run(a, b"SELECT Projects")
    assert unseen_search(a) == b"* SEARCH 1 2 3"
    # the owner's \Seen is the file name's, and no one else's
    run(a, b"STORE 3 +FLAGS (\\Seen)")
    assert unseen_search(b) == b"* SEARCH 1 3" and unseen_search(c) == b"* SEARCH 2 3"
    run(a, b"CLOSE")
    for who, n in ((a, 2), (b, 2), (c, 2)):
        box = b"Projects" if who is a else PROJ
        assert run(who, b"STATUS " + box + b" (UNSEEN)")[0].endswith(b"(UNSEEN %d)" % n)
    run(c, b"STORE 1 -FLAGS (\\Seen)")
    assert run(c, b"STATUS " + PROJ + b" (UNSEEN)")[0].endswith(b"(UNSEEN 3)")
    lines = run(c, b"SELECT " + PROJ)
    assert b"* OK [UNSEEN 1] First unseen" in lines
    lines = run(b, b"SELECT " + PROJ)
    assert b"* OK [UNSEEN 1] First unseen" in lines


def test_public_folder_seen_is_per_user(srv):
    root = srv.root
    assert mailctl(root, "public", "add", "example.com", "Team", "--grant", "anyone=lrs").returncode == 0
    b, c = session(srv, B), session(srv, C)
    assert mailctl(root, "public", "grant", "example.com", "Team", B, "lrswite").returncode == 0
    assert run(b, b"APPEND Public/Team {3+}\r\nx\r\n")[-1].startswith(b"t1 OK")
    run(b, b"SELECT Public/Team")
    assert run(b, b"STORE 1 +FLAGS (\\Seen)")[-1].startswith(b"t1 OK")
    assert unseen_search(b) == b"* SEARCH"
    run(c, b"SELECT Public/Team")
    assert unseen_search(c) == b"* SEARCH 1"
    run(c, b"FETCH 1 BODY[]")
    assert unseen_search(c) == b"* SEARCH"


def test_without_s_right_no_seen_is_set(srv):
    owner_folder(srv.root, rights=("b@example.com lrwi",))
    b = session(srv, B)
    run(b, b"SELECT " + PROJ)
    assert run(b, b"STORE 1 +FLAGS (\\Seen)")[-1].startswith(b"t1 NO [NOPERM]")
    assert b"\\Seen" not in b"".join(run(b, b"FETCH 1 BODY[]"))
    assert unseen_search(b) == b"* SEARCH 1 2 3"


def test_copy_out_carries_the_users_seen(srv):
    md = owner_folder(srv.root, count=2)
    b = session(srv, B)
    run(b, b"SELECT " + PROJ)
    run(b, b"STORE 2 +FLAGS (\\Seen)")
    assert run(b, b"COPY 1:2 INBOX")[-1].startswith(b"t1 OK [COPYUID")
    assert flags_of(b, b"INBOX") == {1: b"\\Recent", 2: b"\\Recent \\Seen"}
    assert all("\\Seen" not in m.flags for m in md.folder("Projects").sync())


def test_damaged_record_reads_as_nothing_seen_and_is_made_anew(srv):
    md = owner_folder(srv.root)
    b = session(srv, B)
    run(b, b"SELECT " + PROJ)
    run(b, b"STORE 1:2 +FLAGS (\\Seen)")
    record = md.folder_path("Projects") / seen_record_file(B)
    assert record.read_text().splitlines()[1] == "1:2"
    for junk in (b"\xff\xfe garbage\n1:3\n", b"mailctl-seen 1 1 2 3\n", b"mailctl-seen 1 7\n5:1\n", b""):
        record.write_bytes(junk)
        lines = run(b, b"NOOP") + run(b, b"SEARCH UNSEEN") + run(b, b"STATUS " + PROJ + b" (UNSEEN)")
        assert b"* SEARCH 1 2 3" in lines and lines[-1].startswith(b"t1 OK")
        assert not any(b"/" in x and b"Shared/" not in x for x in lines)   # no server path
    assert run(b, b"STORE 3 +FLAGS (\\Seen)")[-1].startswith(b"t1 OK")
    assert unseen_search(b) == b"* SEARCH 1 2"


def test_record_is_compact_and_pruned_of_expunged(srv):
    md = owner_folder(srv.root, count=6)
    a, b = session(srv, A), session(srv, B)
    run(b, b"SELECT " + PROJ)
    run(b, b"STORE 1:6 +FLAGS (\\Seen)")
    run(a, b"SELECT Projects")
    run(a, b"STORE 3,6 +FLAGS (\\Deleted)")
    run(a, b"EXPUNGE")
    run(b, b"UID STORE 5 -FLAGS (\\Seen)")   # live 1 2 4 5: the run 1,2,4 spans expunged 3
    record = md.folder_path("Projects") / seen_record_file(B)
    assert record.read_text().splitlines()[1] == "1:4"     # 6 expunged: pruned
    assert B not in " ".join(p.name for p in md.folder_path("Projects").iterdir())


def test_folder_shared_with_many_users(tmp_path):
    users = [f"u{n}@example.com" for n in range(40)]
    root = make_root(tmp_path, accounts={A: PASSWORD, **{u: PASSWORD for u in users}}, settings=SETTINGS)
    md = owner_folder(root, count=2, rights=tuple(f"{u} lrs" for u in users))
    with running_server(root) as srv:
        for n, u in enumerate(users):
            r = session(srv, u)
            run(r, b"SELECT " + PROJ)
            if n % 2:
                run(r, b"FETCH 1 BODY[]")
            assert unseen_search(r) == (b"* SEARCH 2" if n % 2 else b"* SEARCH 1 2")
            r.close()
    names = [p.name for p in md.folder_path("Projects").iterdir() if p.name.startswith("mailctl-seen.")]
    assert len([x for x in names if not x.endswith(".lock")]) == 20     # one record per reader


def test_two_serving_processes_of_one_user(tmp_path):
    root = make_root(tmp_path, accounts={A: PASSWORD, B: PASSWORD}, settings={**SETTINGS, "server.processes": 2})
    md = owner_folder(root, count=2, rights=("b@example.com lrswite",))
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        port = proc.ports["imap"]
        sessions = []
        for n in range(2, 40):
            c = IMAP4From(f"127.0.0.{n}", port)
            c.login(B, PASSWORD)
            sessions.append(c)
            pids = {_pid(root, f"127.0.0.{i + 2}") for i in range(len(sessions))}
            if len(pids) == 2:
                break
        first, second = sessions[0], sessions[-1]
        assert _pid(root, "127.0.0.2") != _pid(root, f"127.0.0.{len(sessions) + 1}")
        assert second.enable("CONDSTORE")[0] == "OK"
        for s in (first, second):
            assert s.select('"Shared/a@example.com/Projects"')[0] == "OK"
        time.sleep(0.2)
        second.noop()       # settled: only a changed stamp (the record's) shows the change
        second.untagged_responses.pop("FETCH", None)
        assert first.store("2", "+FLAGS", "(\\Seen)")[0] == "OK"
        deadline = time.monotonic() + 5
        seen = b""
        while time.monotonic() < deadline and b"\\Seen" not in seen:
            typ, data = second.noop()
            seen = b" ".join(x for x in second.untagged_responses.pop("FETCH", []) if isinstance(x, bytes))
            time.sleep(0.1)
        assert re.search(rb"UID 2 FLAGS \(\\Seen\) MODSEQ \(\d+\)", seen), seen
        assert second.search(None, "UNSEEN")[1] == [b"1"]
        assert all("\\Seen" not in m.flags for m in md.folder("Projects").sync())   # the owner's
        for s in sessions:
            s.logout()


def _pid(root, ip: str) -> int:
    import json
    data = json.loads(mailctl(root, "who", "--json").stdout)
    sessions = data["sessions"] if isinstance(data, dict) else data
    return next(s["pid"] for s in sessions if s["ip"] == ip)


def test_condstore_private_change_gets_a_new_modseq(srv):
    owner_folder(srv.root, count=2)
    a, b1, b2 = session(srv, A), session(srv, B), session(srv, B)
    lines = run(b1, b"SELECT " + PROJ + b" (CONDSTORE)")
    highest = int(next(re.search(rb"HIGHESTMODSEQ (\d+)", x).group(1) for x in lines if b"HIGHESTMODSEQ" in x))
    run(b2, b"SELECT " + PROJ + b" (CONDSTORE)")
    time.sleep(0.2)
    run(b1, b"NOOP")    # a settled scan: from now on only a changed stamp makes b1 look again
    stored = run(b2, b"STORE 1 +FLAGS (\\Seen)")
    first = int(re.search(rb"MODSEQ \((\d+)\)", stored[0]).group(1))
    assert first > highest and b"FLAGS (\\Seen)" in stored[0]
    noop = b"".join(run(b1, b"NOOP"))
    assert b"* 1 FETCH (UID 1 FLAGS (\\Recent \\Seen) MODSEQ (%d))" % first in noop   # b1 claimed \Recent
    changed = run(b1, b"FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % highest)
    assert len(changed) == 2 and changed[0].startswith(b"* 1 FETCH")
    # a conditional STORE (inside the folder's modseq step) gets its own new one
    cond = run(b2, b"STORE 2 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % first)
    assert cond[-1].startswith(b"t1 OK") and int(re.search(rb"MODSEQ \((\d+)\)", cond[0]).group(1)) > first
    assert run(b2, b"STORE 1 (UNCHANGEDSINCE %d) -FLAGS (\\Seen)" % highest)[-1].startswith(b"t1 OK [MODIFIED 1]")
    # the owner saw none of it as a flag of theirs
    run(a, b"SELECT Projects")
    assert unseen_search(a) == b"* SEARCH 1 2"


def test_store_on_a_large_folder_writes_the_record_once(srv):
    md = owner_folder(srv.root, count=1500)
    b = session(srv, B)
    run(b, b"SELECT " + PROJ)
    started = time.monotonic()
    assert run(b, b"STORE 1:* +FLAGS.SILENT (\\Seen)")[-1] == b"t1 OK STORE completed"
    took = time.monotonic() - started
    assert unseen_search(b) == b"* SEARCH"
    assert (md.folder_path("Projects") / seen_record_file(B)).read_text().splitlines()[1] == "1:1500"
    # one record write: ~0.04 s here; a write per message took ~1.1 s (and grows as n²)
    assert took < 0.6, took


def test_renaming_the_selected_shared_folder_keeps_the_users_seen(srv):
    md = Maildir.for_account(srv.root, "example.com", "a")
    md.create()
    md.create_folder("Team")
    md.create_folder("Team/Projects")
    md.deliver(MSG, folder="Team/Projects")
    md.deliver(MSG, folder="Team/Projects")
    md.folder("Team/Projects").sync()
    for name in ("Team", "Team/Projects"):
        (md.folder_path(name) / "dovecot-acl").write_text("user=b@example.com lrswipkxtea\n")
    b = session(srv, B)
    run(b, b"SELECT Shared/a@example.com/Team/Projects")
    run(b, b"STORE 2 +FLAGS (\\Seen)")
    assert run(b, b"RENAME Shared/a@example.com/Team/Projects Shared/a@example.com/Team/Plans")[-1] \
        .startswith(b"t1 OK")
    run(b, b"NOOP")
    assert unseen_search(b) == b"* SEARCH 1"
    assert run(b, b"STORE 1 +FLAGS (\\Seen)")[-1].startswith(b"t1 OK")
    assert all("\\Seen" not in m.flags for m in md.folder("Team/Plans").sync())   # the owner's
    run(b, b"SELECT Shared/a@example.com/Team/Plans")
    assert unseen_search(b) == b"* SEARCH"
