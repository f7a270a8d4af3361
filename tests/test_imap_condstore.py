"""CONDSTORE (RFC 7162 §3.1): a mod-sequence per message and per mailbox, kept in the
folder's mailctl-modseq so every session and serving process agrees on it; FETCH
MODSEQ and CHANGEDSINCE, STORE UNCHANGEDSINCE with [MODIFIED], SEARCH MODSEQ, STATUS
and SELECT HIGHESTMODSEQ, and changes made by others (another session, a file renamed
by hand) getting new mod-sequences."""
from __future__ import annotations

import os
import re

from helpers_mail import box, imap, mailserver, message, user  # noqa: F401 - pytest fixtures, used as test arguments
from helpers_condstore import highest, modseqs, ok, session
from helpers_raw import Raw


def _session(srv, address: str, select: str | None = "SELECT INBOX (CONDSTORE)") -> tuple[Raw, list[bytes]]:
    return session(srv.port("imap"), address, select)


def _deliver(srv, address: str, n: int) -> None:
    md = box(srv, address)
    for i in range(n):
        md.deliver(message(f"m{i}"))


def test_select_condstore_reports_highestmodseq_and_fetch_modseq(mailserver, user):
    _deliver(mailserver, user, 3)
    r, lines = _session(mailserver, user)
    top = highest(lines)
    assert top > 0
    fetched = ok(r, "UID FETCH 1:* (FLAGS MODSEQ)")
    found = modseqs(fetched)
    assert sorted(found) == [1, 2, 3] and max(found.values()) == top, fetched


def test_store_bumps_modseq_and_changedsince_returns_only_changed(mailserver, user):
    _deliver(mailserver, user, 4)
    r, lines = _session(mailserver, user)
    before = highest(lines)
    stored = ok(r, "STORE 2 +FLAGS (\\Flagged)")
    assert re.fullmatch(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \((\d+)\)\)", stored[0]), stored
    after = modseqs(stored)[2]
    assert after > before
    changed = ok(r, f"FETCH 1:* (FLAGS) (CHANGEDSINCE {before})")
    assert [line for line in changed if line.startswith(b"* ")] == [
        b"* 2 FETCH (FLAGS (\\Flagged) MODSEQ (%d))" % after], changed
    # UID FETCH CHANGEDSINCE the newest: nothing
    assert ok(r, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {after})")[:-1] == []


def test_unchangedsince_fails_for_messages_changed_since_with_modified(mailserver, user):
    _deliver(mailserver, user, 3)
    r, lines = _session(mailserver, user)
    before = highest(lines)
    ok(r, "STORE 1 +FLAGS (\\Seen)")
    lines = ok(r, f"STORE 1:3 (UNCHANGEDSINCE {before}) +FLAGS (\\Flagged)")
    assert lines[-1].startswith(b"c1 OK [MODIFIED 1]"), lines
    flagged = {int(m[1]) for line in lines if (m := re.match(rb"\* (\d+) FETCH .*\\Flagged", line))}
    assert flagged == {2, 3}, lines
    fetched = ok(r, "FETCH 1 (FLAGS)")
    assert b"\\Flagged" not in fetched[0], fetched
    # UID STORE: MODIFIED names UIDs; UNCHANGEDSINCE 0 always fails.
    lines = ok(r, "UID STORE 2:3 (UNCHANGEDSINCE 0) -FLAGS (\\Flagged)")
    assert lines[-1].startswith(b"c1 OK [MODIFIED 2:3]"), lines
    assert not any(b"FETCH" in line for line in lines), lines


def test_store_silent_with_condstore_still_sends_modseq(mailserver, user):
    _deliver(mailserver, user, 1)
    r, lines = _session(mailserver, user)
    before = highest(lines)
    lines = ok(r, f"STORE 1 (UNCHANGEDSINCE {before}) +FLAGS.SILENT (\\Seen)")
    m = re.fullmatch(rb"\* 1 FETCH \(UID 1 MODSEQ \((\d+)\)\)", lines[0])
    assert m and int(m[1]) > before, lines


def test_search_modseq_ends_with_the_highest_found(mailserver, user):
    _deliver(mailserver, user, 3)
    r, lines = _session(mailserver, user)
    before = highest(lines)
    stored = ok(r, "STORE 3 +FLAGS (\\Answered)")
    after = modseqs(stored)[3]
    found = ok(r, f"SEARCH MODSEQ {before + 1}")
    assert found[0] == b"* SEARCH 3 (MODSEQ %d)" % after, found
    found = ok(r, f'UID SEARCH MODSEQ "/flags/\\\\answered" all {before + 1}')
    assert found[0] == b"* SEARCH 3 (MODSEQ %d)" % after, found
    assert ok(r, f"SEARCH MODSEQ {after + 1}")[0] == b"* SEARCH"


def test_status_highestmodseq_follows_changes(mailserver, user):
    _deliver(mailserver, user, 2)
    r, _ = _session(mailserver, user, select=None)
    first = int(re.search(rb"HIGHESTMODSEQ (\d+)", ok(r, "STATUS INBOX (MESSAGES HIGHESTMODSEQ)")[0])[1])
    c = imap(mailserver, user)
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Seen)")
    c.logout()
    status = ok(r, "STATUS INBOX (HIGHESTMODSEQ)")
    assert int(re.search(rb"HIGHESTMODSEQ (\d+)", status[0])[1]) > first, status


def test_other_sessions_store_is_announced_with_modseq(mailserver, user):
    """Session B's STORE bumps the mod-sequence; A (CONDSTORE) hears FETCH with MODSEQ on NOOP."""
    _deliver(mailserver, user, 2)
    a, lines = _session(mailserver, user)
    before = highest(lines)
    b, _ = _session(mailserver, user, select="SELECT INBOX")
    ok(b, "STORE 2 +FLAGS (\\Deleted)")
    heard = ok(a, "NOOP")
    m = re.fullmatch(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Deleted\) MODSEQ \((\d+)\)\)", heard[0])
    assert m and int(m[1]) > before, heard
    # B's plain STORE gave no mod-sequence itself; A's look did, and B sees the same one.
    fetched = ok(b, "FETCH 2 (MODSEQ)")
    assert fetched[0] == b"* 2 FETCH (MODSEQ (%d))" % int(m[1]), fetched


def test_file_renamed_by_hand_gets_a_new_modseq(mailserver, user):
    _deliver(mailserver, user, 2)
    a, lines = _session(mailserver, user)
    before = highest(lines)
    cur = box(mailserver, user).path / "cur"
    name = sorted(os.listdir(cur))[0]
    os.rename(cur / name, cur / (name.split(":")[0] + ":2,FS"))
    changed = ok(a, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {before})")
    # the update announced before the UID FETCH runs, and its answer: both the same
    assert len({line for line in changed if line.startswith(b"* ")}) == 1, changed
    assert b"\\Flagged \\Seen" in changed[0] or b"\\Seen \\Flagged" in changed[0], changed
    assert modseqs(changed)[1] > before


def test_deleting_the_modseq_file_costs_a_rebuild_only(mailserver, user):
    _deliver(mailserver, user, 2)
    a, lines = _session(mailserver, user)
    before = highest(lines)
    a.close()
    os.unlink(box(mailserver, user).path / "mailctl-modseq")
    b, lines = _session(mailserver, user)
    after = highest(lines)
    assert after > before       # every message has a new mod-sequence, above any given before
    assert set(modseqs(ok(b, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {before})")).values()) == {after}
    (box(mailserver, user).path / "mailctl-modseq").write_bytes(b"garbage\x00\n1 2\n")
    c, lines = _session(mailserver, user)
    assert highest(lines) > after


def test_enable_condstore_and_capability(mailserver, user):
    r, _ = _session(mailserver, user, select=None)
    caps = ok(r, "CAPABILITY")[0].split()
    assert b"CONDSTORE" in caps and b"QRESYNC" in caps
    assert ok(r, "ENABLE CONDSTORE X-OTHER")[0] == b"* ENABLED CONDSTORE"
    assert ok(r, "ENABLE CONDSTORE")[0] == b"* ENABLED"
    lines = ok(r, "EXAMINE INBOX")          # enabled: HIGHESTMODSEQ without asking
    assert highest(lines) > 0


def test_imapclient_condstore_calls(mailserver, user):
    """A real client library's CONDSTORE calls: HIGHESTMODSEQ from select_folder, fetch
    with the CHANGEDSINCE modifier, and a flag change seen by a read-only session."""
    from imapclient import IMAPClient
    _deliver(mailserver, user, 3)
    with IMAPClient("127.0.0.1", port=mailserver.port("imap"), ssl=False) as reader, \
            IMAPClient("127.0.0.1", port=mailserver.port("imap"), ssl=False) as writer:
        reader.login(user, "secret-pass-1")
        writer.login(user, "secret-pass-1")
        assert b"CONDSTORE" in reader.capabilities()
        assert reader.enable("CONDSTORE") == [b"CONDSTORE"]
        selected = reader.select_folder("INBOX", readonly=True)
        before = selected[b"HIGHESTMODSEQ"]
        assert before > 0
        writer.select_folder("INBOX")
        writer.add_flags([2], [b"\\Answered"])
        reader.noop()
        changed = reader.fetch([1, 2, 3], ["FLAGS"], modifiers=[f"CHANGEDSINCE {before}"])
        assert list(changed) == [2], changed
        assert b"\\Answered" in changed[2][b"FLAGS"] and changed[2][b"MODSEQ"][0] > before
        assert reader.folder_status("INBOX", ["HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"] == changed[2][b"MODSEQ"][0]
        assert reader.fetch([1, 2, 3], ["FLAGS"], modifiers=[f"CHANGEDSINCE {changed[2][b'MODSEQ'][0]}"]) == {}
