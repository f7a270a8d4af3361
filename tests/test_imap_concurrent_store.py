"""STORE by several sessions on the same message (issue 13, defect 1): +FLAGS and -FLAGS
change only the flags they name, against the message's flags on disk, so no session's
change is lost, whether the sessions share a serving process or not; and the FETCH
FLAGS a STORE answers are the message's real flags, other sessions' included."""
from __future__ import annotations

import imaplib
import re
import threading
import time

import pytest

import dovecot
from helpers_mail import PASSWORD, add_users, box, imap, maildir, mailserver, message, new_root, running, \
    user  # noqa: F401 - pytest fixtures, used as test arguments
from helpers_server import imap_sessions_in_two_processes, make_root, serve_process, wait_for_processes

PW = "concurrent-store-pw-1"
ALICE = "alice@example.com"


def _flags(data) -> dict[int, set[str]]:
    """Sequence number -> flags (without \\Recent) from FETCH responses."""
    out = {}
    lines: list[bytes] = []
    for item in data:        # (head, literal) then the rest of that response: head + rest
        if isinstance(item, tuple):
            lines.append(item[0])
        elif lines and item is not None and not re.match(rb"\d+ ", item):
            lines[-1] += item
        elif item is not None:
            lines.append(item)
    for line in lines:
        m = re.match(rb"(\d+) (?:FETCH )?\(.*FLAGS \(([^)]*)\)", line)
        if m:
            out[int(m[1])] = set(m[2].decode().split()) - {"\\Recent"}
    return out


def _store(c, seqs: str, op: str, flags: str) -> dict[int, set[str]]:
    typ, data = c.store(seqs, op, flags)
    assert typ == "OK", data
    return _flags(data)


def _disk_flags(c, seqs: str = "1:*") -> dict[int, set[str]]:
    """The flags as the session sees them after a NOOP (FETCH and STORE tell of no
    other session's change: they answer from the session's copy)."""
    assert c.noop()[0] == "OK"
    typ, data = c.fetch(seqs, "(FLAGS)")
    assert typ == "OK", data
    return _flags(data)


def test_remove_by_a_stale_session_keeps_the_other_sessions_add(mailserver, user):
    box(mailserver, user).deliver(message("one"), flags=["\\Seen"])
    b = imap(mailserver, user)
    b.select("INBOX")                      # B selected earlier: its copy says (\Seen)
    a = imap(mailserver, user)
    a.select("INBOX")
    assert _store(a, "1", "+FLAGS", "(\\Answered)") == {1: {"\\Seen", "\\Answered"}}
    # B has not looked since; its -FLAGS must not write its old copy back.
    assert _store(b, "1", "-FLAGS", "(\\Seen)") == {1: {"\\Answered"}}
    assert _store(a, "1", "+FLAGS", "(\\Flagged)") == {1: {"\\Answered", "\\Flagged"}}
    assert _store(b, "1", "+FLAGS", "(\\Draft)") == {1: {"\\Answered", "\\Flagged", "\\Draft"}}
    c = imap(mailserver, user)
    c.select("INBOX", readonly=True)
    assert _disk_flags(c) == {1: {"\\Answered", "\\Flagged", "\\Draft"}}
    for s in (a, b, c):
        s.logout()


def test_an_add_the_stale_view_already_shows_is_still_made(mailserver, user):
    """B's copy has \\Seen, A removed it: B's +FLAGS (\\Seen) is no no-op, it sets it again."""
    box(mailserver, user).deliver(message("one"), flags=["\\Seen"])
    b = imap(mailserver, user)
    b.select("INBOX")
    a = imap(mailserver, user)
    a.select("INBOX")
    assert _store(a, "1", "-FLAGS", "(\\Seen)") == {1: set()}
    assert _store(b, "1", "+FLAGS", "(\\Seen)") == {1: {"\\Seen"}}
    assert _disk_flags(a) == {1: {"\\Seen"}}
    a.logout()
    b.logout()


def test_keywords_of_two_sessions_both_stay(mailserver, user):
    box(mailserver, user).deliver(message("one"))
    b = imap(mailserver, user)
    b.select("INBOX")
    a = imap(mailserver, user)
    a.select("INBOX")
    assert _store(a, "1", "+FLAGS", "($Work)") == {1: {"$Work"}}
    assert _store(b, "1", "+FLAGS", "($Urgent \\Flagged)") == {1: {"$Work", "$Urgent", "\\Flagged"}}
    assert _store(a, "1", "-FLAGS", "(\\Flagged)") == {1: {"$Work", "$Urgent"}}
    assert _store(b, "1", "-FLAGS", "($Work)") == {1: {"$Urgent"}}
    # FLAGS (replace) is the one form that sets the whole list.
    assert _store(a, "1", "FLAGS", "(\\Seen)") == {1: {"\\Seen"}}
    assert _disk_flags(b) == {1: {"\\Seen"}}
    a.logout()
    b.logout()


def test_silent_store_still_tells_of_another_sessions_flags(mailserver, user):
    box(mailserver, user).deliver(message("one"))
    b = imap(mailserver, user)
    b.select("INBOX")
    a = imap(mailserver, user)
    a.select("INBOX")
    _store(a, "1", "+FLAGS", "(\\Answered)")
    typ, data = b.store("1", "+FLAGS.SILENT", "(\\Seen)")
    assert typ == "OK"
    # The client asked not to hear of its own change, but \\Answered is news to it.
    assert _flags(data) == {1: {"\\Seen", "\\Answered"}} or \
        _flags(b.untagged_responses.get("FETCH", [])) == {1: {"\\Seen", "\\Answered"}}
    a.logout()
    b.logout()


def test_fetch_body_sets_seen_without_dropping_another_sessions_flag(mailserver, user):
    box(mailserver, user).deliver(message("one"))
    b = imap(mailserver, user)
    b.select("INBOX")
    a = imap(mailserver, user)
    a.select("INBOX")
    _store(a, "1", "+FLAGS", "(\\Flagged)")
    typ, data = b.fetch("1", "(BODY[TEXT])")
    assert typ == "OK"
    assert _flags(data) == {1: {"\\Flagged", "\\Seen"}}
    assert _disk_flags(a) == {1: {"\\Flagged", "\\Seen"}}
    a.logout()
    b.logout()


# -- two serving processes -----------------------------------------------------------

def _two_process_root(tmp_path, count: int):
    root = make_root(tmp_path, accounts={ALICE: PW},
                     settings={"server.processes": 2, "auth.allow_plaintext": True,
                               "queue.offline": True})
    from engine.maildir import Maildir
    md = Maildir.for_account(root, "example.com", "alice")
    md.create()
    for i in range(count):
        md.deliver(message(f"m{i}"), flags=["\\Seen"])
    return root


def test_interleaved_stores_across_two_serving_processes(tmp_path):
    root = _two_process_root(tmp_path, 1)
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        a, b = imap_sessions_in_two_processes(root, proc.ports["imap"], ALICE, PW)
        b.select("INBOX")
        a.select("INBOX")
        assert _store(a, "1", "+FLAGS", "(\\Answered)") == {1: {"\\Seen", "\\Answered"}}
        assert _store(b, "1", "-FLAGS", "(\\Seen)") == {1: {"\\Answered"}}
        assert _store(a, "1", "+FLAGS", "($Work)") == {1: {"\\Answered", "$Work"}}
        assert _store(b, "1", "+FLAGS", "(\\Flagged)") == {1: {"\\Answered", "$Work", "\\Flagged"}}
        assert _store(a, "1", "-FLAGS", "(\\Answered)") == {1: {"$Work", "\\Flagged"}}
        assert _disk_flags(b) == {1: {"$Work", "\\Flagged"}}
        a.logout()
        b.logout()


def test_a_burst_of_stores_from_two_processes_loses_nothing(tmp_path):
    count = 200
    root = _two_process_root(tmp_path, count)
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        a, b = imap_sessions_in_two_processes(root, proc.ports["imap"], ALICE, PW)
        a.select("INBOX")
        b.select("INBOX")
        errors = []
        start = threading.Barrier(2)

        def run(c, steps):
            try:
                start.wait(10)
                for seqs, op, flags in steps:
                    typ, data = c.store(seqs, op, flags)
                    assert typ == "OK", data
            except Exception as e:           # reported by the main thread
                errors.append(e)
        # A works up the folder, B down it; each also changes all of it at once, twice.
        a_steps = [("1:*", "+FLAGS.SILENT", "($FromA)")]
        a_steps += [(str(i), "+FLAGS", "(\\Flagged)") for i in range(1, count + 1)]
        a_steps += [("1:*", "+FLAGS.SILENT", "(\\Draft)")]
        b_steps = [("1:*", "+FLAGS.SILENT", "($FromB)")]
        b_steps += [(str(i), op, flags) for i in range(count, 0, -1)
                    for op, flags in (("-FLAGS", "(\\Seen)"), ("+FLAGS", "(\\Answered)"))]
        b_steps += [("1:*", "-FLAGS.SILENT", "(\\Draft)")]
        threads = [threading.Thread(target=run, args=(a, a_steps)), threading.Thread(target=run, args=(b, b_steps))]
        began = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert time.monotonic() - began < 120
        got = _disk_flags(a)
        assert len(got) == count
        want = {"$FromA", "$FromB", "\\Flagged", "\\Answered"}
        # \\Draft: A's +FLAGS and B's -FLAGS on all race; either order is a valid outcome.
        lost = {seq: f for seq, f in got.items() if f - {"\\Draft"} != want}
        assert not lost, lost
        a.logout()
        b.logout()
    md_files = list((root.mail_dir / "example.com" / "alice" / "cur").iterdir())
    assert len(md_files) == count              # no message doubled or lost by the renames


# -- Dovecot renaming the same files -----------------------------------------------

@pytest.mark.skipif(not dovecot.available(), reason="Dovecot is not installed")
def test_stores_interleaved_with_dovecots_on_the_same_message(tmp_path):
    """Dovecot serves the same tree at the same time: its flag changes are renames of
    the same files, and neither server writes back the other's old flags."""
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    address = "alice@example.com"
    maildir(root).deliver(message("shared"), flags=["\\Seen"])
    with running(root, ("imap",)) as srv:
        ours = imap(srv, address)
        ours.select("INBOX")                   # numbered and looked at before Dovecot starts
        with dovecot.dovecot_server(root.path, {address: PASSWORD}) as dc:
            theirs = imaplib.IMAP4(dc.host, dc.imap_port, timeout=20)
            theirs.login(address, PASSWORD)
            theirs.select("INBOX")
            assert _store(theirs, "1", "+FLAGS", "(\\Answered)") == {1: {"\\Seen", "\\Answered"}}
            assert _store(ours, "1", "-FLAGS", "(\\Seen)") == {1: {"\\Answered"}}
            assert _store(theirs, "1", "+FLAGS", "(\\Flagged)") == {1: {"\\Answered", "\\Flagged"}}
            assert _store(ours, "1", "+FLAGS", "(\\Draft)") == {1: {"\\Answered", "\\Flagged", "\\Draft"}}
            assert _disk_flags(theirs) == {1: {"\\Answered", "\\Flagged", "\\Draft"}}, dc.log_text()[-2000:]
            theirs.logout()
        assert _disk_flags(ours) == {1: {"\\Answered", "\\Flagged", "\\Draft"}}
        ours.logout()
