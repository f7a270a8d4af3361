"""QRESYNC (RFC 7162 §3.2): a client that was offline while others expunged messages and
changed flags resynchronises with one SELECT (QRESYNC (uidvalidity modseq known-uids)):
exactly the VANISHED (EARLIER) UIDs and the changed flags. Whoever made the changes (a
plain session of ours, a hand on the files, Dovecot) and whether the server restarted
in between; VANISHED instead of EXPUNGE once enabled; two serving processes agree."""
from __future__ import annotations

import imaplib
import os
import re

import pytest

import dovecot
from helpers_condstore import fetched_flags, highest, modseqs, ok, session, uidvalidity, vanished
from helpers_mail import PASSWORD, box, imap, mailserver, message, user  # noqa: F401 - pytest fixtures, used as test arguments
from helpers_server import imap_sessions_in_two_processes, make_root, serve_process, wait_for_processes
from engine.maildir import Maildir

QRESYNC = "QRESYNC"


def _deliver(md: Maildir, n: int) -> None:
    for i in range(n):
        md.deliver(message(f"m{i}"))


def _remember(port: int, address: str) -> tuple[int, int]:
    """A QRESYNC client's first visit: (uidvalidity, highest modseq) it keeps offline."""
    r, lines = session(port, address, "SELECT INBOX", enable=QRESYNC)
    state = uidvalidity(lines), highest(lines)
    ok(r, "LOGOUT", b"z")
    r.close()
    return state


def _resync(port: int, address: str, state: tuple[int, int], known: str = "1:5") -> list[bytes]:
    r, lines = session(port, address, f"SELECT INBOX (QRESYNC ({state[0]} {state[1]} {known}))", enable=QRESYNC)
    r.close()
    return lines


def _assert_resync(lines: list[bytes], gone: list[int], flags: dict[int, set[str]], before: int) -> None:
    assert vanished(lines) == gone, lines
    assert fetched_flags(lines) == flags, lines
    assert all(n > before for n in modseqs(lines).values()), lines
    assert highest(lines) >= max(modseqs(lines).values(), default=0)
    # VANISHED (EARLIER) comes before the FETCH lines, all before the tagged OK
    kinds = [b"V" if b"VANISHED" in x else b"F" for x in lines if b"VANISHED" in x or b" FETCH " in x]
    assert kinds == sorted(kinds, reverse=True), lines


def _other_client_changes(port: int, address: str) -> None:
    """A plain IMAP client (no CONDSTORE): expunges UIDs 2 and 4, flags UID 3."""
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(address, PASSWORD)
    c.select("INBOX")
    c.uid("STORE", "2,4", "+FLAGS", "(\\Deleted)")
    c.expunge()
    c.uid("STORE", "3", "+FLAGS", "(\\Flagged $Work)")
    c.logout()


def test_offline_client_resyncs_with_one_select(mailserver, user):
    md = box(mailserver, user)
    _deliver(md, 5)
    port = mailserver.port("imap")
    state = _remember(port, user)
    _other_client_changes(port, user)
    lines = _resync(port, user, state)
    _assert_resync(lines, [2, 4], {3: {"\\Flagged", "$Work"}}, state[1])
    # Without known-uids: the same expunges (all since the modseq); a wrong UIDVALIDITY: none.
    assert vanished(_resync(port, user, state, known="")) == [2, 4]
    stale = _resync(port, user, (state[0] + 1, state[1]))
    assert vanished(stale) == [] and fetched_flags(stale) == {}, stale


def test_enable_qresync_then_expunge_says_vanished(mailserver, user):
    _deliver(box(mailserver, user), 3)
    r, lines = session(mailserver.port("imap"), user, "SELECT INBOX", enable=QRESYNC)
    ok(r, "STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    lines = ok(r, "EXPUNGE")
    assert lines[:-1] == [b"* VANISHED 1,3"], lines
    assert re.match(rb"c1 OK \[HIGHESTMODSEQ \d+\]", lines[-1]), lines
    # another session's expunge reaches us as VANISHED too
    c = imap(mailserver, user)
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Deleted)")
    c.expunge()
    c.logout()
    assert b"* VANISHED 2" in ok(r, "NOOP")


def test_uid_fetch_changedsince_vanished(mailserver, user):
    md = box(mailserver, user)
    _deliver(md, 5)
    port = mailserver.port("imap")
    r, lines = session(port, user, "SELECT INBOX", enable=QRESYNC)
    before = highest(lines)
    _other_client_changes(port, user)
    fetched = ok(r, f"UID FETCH 1:5 (FLAGS) (CHANGEDSINCE {before} VANISHED)")
    assert vanished(fetched) == [2, 4], fetched
    assert fetched_flags(fetched) == {3: {"\\Flagged", "$Work"}}, fetched
    # the update announced before the UID FETCH runs (VANISHED, FETCH) may come first;
    # the command's own VANISHED (EARLIER) comes before its FETCH responses
    earlier = fetched.index(next(x for x in fetched if b"EARLIER" in x))
    assert any(b" FETCH (UID 3 " in x for x in fetched[earlier:]), fetched
    # VANISHED without QRESYNC enabled, or without CHANGEDSINCE: BAD
    r2, _ = session(port, user, "SELECT INBOX (CONDSTORE)")
    r2.send(b"b1 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n")
    assert r2.until_tag(b"b1")[-1].startswith(b"b1 BAD")
    r.send(b"b2 UID FETCH 1:* (FLAGS) (VANISHED)\r\n")
    assert r.until_tag(b"b2")[-1].startswith(b"b2 BAD")


def test_qresync_without_enable_is_bad(mailserver, user):
    r, _ = session(mailserver.port("imap"), user, select=None)
    r.send(b"s1 SELECT INBOX (QRESYNC (1 1))\r\n")
    assert r.until_tag(b"s1")[-1].startswith(b"s1 BAD")


def test_files_expunged_and_renamed_by_hand(mailserver, user):
    md = box(mailserver, user)
    _deliver(md, 5)
    port = mailserver.port("imap")
    state = _remember(port, user)
    by_uid = {m.uid: m for m in md.folder("INBOX").sync()}
    os.unlink(by_uid[2].path)
    os.rename(by_uid[5].path, by_uid[5].folder_path / "cur" / (by_uid[5].base + ":2,S"))
    _assert_resync(_resync(port, user, state), [2], {5: {"\\Seen"}}, state[1])


def test_lost_modseq_file_reports_every_known_uid_not_present(mailserver, user):
    """The expunge log is gone: VANISHED (EARLIER) names every known UID not in the folder
    (RFC 7162 §3.2.5.2 allows it); every message's flags are sent again."""
    md = box(mailserver, user)
    _deliver(md, 5)
    port = mailserver.port("imap")
    state = _remember(port, user)
    _other_client_changes(port, user)
    os.unlink(md.folder("INBOX").path / "mailctl-modseq")
    lines = _resync(port, user, state, known="1:5")
    assert vanished(lines) == [2, 4], lines
    assert set(fetched_flags(lines)) == {1, 3, 5}, lines


def test_resync_after_server_restart(tmp_path):
    address = "alice@example.com"
    root = make_root(tmp_path, accounts={address: PASSWORD},
                     settings={"auth.allow_plaintext": True, "auth.failure_delay_s": 0})
    md = Maildir.for_account(root, "example.com", "alice")
    md.create()
    _deliver(md, 5)
    with serve_process(root) as proc:
        state = _remember(proc.ports["imap"], address)
        _other_client_changes(proc.ports["imap"], address)
    with serve_process(root) as proc:
        _assert_resync(_resync(proc.ports["imap"], address, state), [2, 4], {3: {"\\Flagged", "$Work"}}, state[1])
    # changed while no server ran: recorded at the next look
    folder = md.folder("INBOX")
    by_uid = {m.uid: m for m in folder.sync()}
    os.unlink(by_uid[1].path)
    folder.set_flags(by_uid[5], ["\\Answered"])
    with serve_process(root) as proc:
        lines = _resync(proc.ports["imap"], address, state)
        _assert_resync(lines, [1, 2, 4], {3: {"\\Flagged", "$Work"}, 5: {"\\Answered"}}, state[1])


def test_two_serving_processes_agree_on_modseqs(tmp_path):
    address = "alice@example.com"
    root = make_root(tmp_path, accounts={address: PASSWORD}, settings={
        "server.processes": 2, "auth.allow_plaintext": True, "auth.failure_delay_s": 0,
        "mailbox.max_userip_connections": 0, "mailbox.max_connections_per_ip": 0})
    md = Maildir.for_account(root, "example.com", "alice")
    md.create()
    _deliver(md, 3)
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        a, b = imap_sessions_in_two_processes(root, proc.ports["imap"], address, PASSWORD)
        for c in (a, b):
            assert c._simple_command("ENABLE", "CONDSTORE")[0] == "OK"
            c.select("INBOX")
        first = {c: _fetch_modseqs(c) for c in (a, b)}
        assert first[a] == first[b]
        typ, data = a.uid("STORE", "2", "+FLAGS", "(\\Seen)")
        stored = _imaplib_modseqs(data)
        assert typ == "OK" and stored[2] > first[a][2], data
        b.noop()
        assert _fetch_modseqs(b) == _fetch_modseqs(a) == {**first[a], 2: stored[2]}
        typ, data = b.uid("STORE", "3", "+FLAGS", "(\\Flagged)")
        a.noop()        # (a UID FETCH just after another may answer from what the session knew)
        assert _fetch_modseqs(a)[3] == _imaplib_modseqs(data)[3] > stored[2]
        for c in (a, b):
            c.logout()


def _fetch_modseqs(c: imaplib.IMAP4) -> dict[int, int]:
    typ, data = c.uid("FETCH", "1:*", "(MODSEQ)")
    assert typ == "OK", data
    return _imaplib_modseqs(data)


def _imaplib_modseqs(data: list) -> dict[int, int]:
    """{uid: modseq} of FETCH data as imaplib gives it ("2 (UID 2 MODSEQ (7))")."""
    found = [re.search(rb"UID (\d+).*MODSEQ \((\d+)\)|MODSEQ \((\d+)\).*UID (\d+)", x)
             for x in data if isinstance(x, bytes)]
    return {int(m[1] or m[4]): int(m[2] or m[3]) for m in found if m}


@pytest.mark.skipif(not dovecot.available(), reason="Dovecot is not installed")
def test_resync_after_dovecot_changed_the_tree(tmp_path):
    address = "alice@example.com"
    root = make_root(tmp_path, accounts={address: PASSWORD},
                     settings={"auth.allow_plaintext": True, "auth.failure_delay_s": 0})
    md = Maildir.for_account(root, "example.com", "alice")
    md.create()
    _deliver(md, 5)
    with serve_process(root) as proc:
        state = _remember(proc.ports["imap"], address)
    with dovecot.dovecot_server(root.path, {address: PASSWORD}) as dc:
        _other_client_changes(dc.imap_port, address)
    with serve_process(root) as proc:
        _assert_resync(_resync(proc.ports["imap"], address, state), [2, 4], {3: {"\\Flagged", "$Work"}}, state[1])
