"""When a session hears of another session's EXPUNGE (RFC 3501 §7.4.1, §5.5; RFC 9051 §7.5.1):
never while answering FETCH, STORE or SEARCH, whose sequence numbers the client holds; the
expunged message stays numbered (a ghost) until NOOP, CHECK, IDLE or another command tells
it. A FETCH of it answers as Dovecot does: its UID and flags, NIL for the rest, and
`OK [EXPUNGEISSUED]`. UID FETCH, UID STORE and UID SEARCH may tell it (they name UIDs).
"""
from __future__ import annotations

import json
import re
import time

from engine.imap import commandbase
from helpers_mail import PASSWORD, box, mailserver, message, user  # noqa: F401 - pytest fixtures
from helpers_raw import Raw
from helpers_server import mailctl, make_root, serve_process, wait_for_processes

SUBJECT = b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]"
EXPUNGED = b"OK [EXPUNGEISSUED] Some messages were already expunged"


def _three(md) -> None:
    for i in (1, 2, 3):
        md.deliver(message(f"m{i}", f"body {i}"))


def _session(port: int, address: str) -> Raw:
    c = Raw(port)
    c.login(address)
    assert c.cmd(b"SELECT INBOX", b"s").startswith(b"s OK")
    return c


def _expunge_second(port: int, address: str) -> None:
    """Another session expunges message 2 (UID 2)."""
    b = _session(port, address)
    assert b.cmd(b"STORE 2 +FLAGS.SILENT (\\Deleted)", b"b1").startswith(b"b1 OK")
    assert _run(b, b"b2", b"EXPUNGE") == ([b"* 2 EXPUNGE"], b"b2 OK EXPUNGE completed")
    b.close()


def _run(c: Raw, tag: bytes, command: bytes) -> tuple[list[bytes], bytes]:
    """The untagged lines (literals' text left out) and the tagged reply of one command."""
    c.send(tag + b" " + command + b"\r\n")
    lines = c.until_tag(tag)
    return [x for x in lines[:-1] if x.startswith(b"* ")], lines[-1]


def _no_expunge(lines: list[bytes]) -> None:
    assert not [x for x in lines if x.endswith(b" EXPUNGE")], lines


def _numbers_after_noop(c: Raw) -> None:
    """NOOP tells the EXPUNGE; then the numbers are the disk's."""
    lines, done = _run(c, b"n", b"NOOP")
    assert lines == [b"* 2 EXPUNGE"] and done == b"n OK NOOP completed", (lines, done)
    lines, done = _run(c, b"u", b"FETCH 1:* (UID)")
    assert lines == [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 3)"], lines


def test_fetch_keeps_the_numbers_and_answers_the_expunged_message_empty(mailserver, user):
    _three(box(mailserver, user))
    port = mailserver.port("imap")
    a = _session(port, user)
    _expunge_second(port, user)
    lines, done = _run(a, b"f1", b"FETCH 1:3 (FLAGS)")
    assert [x.split(b" (")[0] for x in lines] == [b"* 1 FETCH", b"* 2 FETCH", b"* 3 FETCH"], lines
    assert done == b"f1 OK FETCH completed"
    lines, done = _run(a, b"f2", b"FETCH 1:3 (UID " + SUBJECT + b")")
    _no_expunge(lines)
    assert lines == [b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {15}",
                     b"* 2 FETCH (UID 2 BODY[HEADER.FIELDS (SUBJECT)] NIL)",
                     b"* 3 FETCH (UID 3 BODY[HEADER.FIELDS (SUBJECT)] {15}"], lines
    assert done == b"f2 " + EXPUNGED
    lines, done = _run(a, b"f3", b"FETCH 2 ALL")
    assert lines == [b'* 2 FETCH (FLAGS (\\Recent) INTERNALDATE "01-Jan-1970 00:00:00 +0000" '
                     b"RFC822.SIZE 0 ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))"], lines
    assert done == b"f3 " + EXPUNGED
    _numbers_after_noop(a)
    a.close()


def test_store_skips_the_expunged_message_without_telling_the_expunge(mailserver, user):
    _three(box(mailserver, user))
    port = mailserver.port("imap")
    a = _session(port, user)
    _expunge_second(port, user)
    box(mailserver, user).deliver(message("m4", "body 4"))   # a new message: EXISTS may come
    lines, done = _run(a, b"s1", b"STORE 1:3 +FLAGS (\\Flagged)")
    _no_expunge(lines)
    fetches = [x for x in lines if b" FETCH " in x]
    assert fetches == [b"* 1 FETCH (FLAGS (\\Flagged \\Recent))", b"* 3 FETCH (FLAGS (\\Flagged \\Recent))"], lines
    assert done == b"s1 " + EXPUNGED
    # EXISTS never shrinks without EXPUNGE: four messages as the client counts them.
    assert [x for x in lines if x.endswith(b" EXISTS")] == [b"* 4 EXISTS"], lines
    lines, done = _run(a, b"s2", b"FETCH 1:4 (UID FLAGS)")
    _no_expunge(lines)
    assert [re.match(rb"\* (\d+) FETCH \(UID (\d+)", x).groups() for x in lines] == \
        [(b"1", b"1"), (b"2", b"2"), (b"3", b"3"), (b"4", b"4")], lines
    lines, done = _run(a, b"s3", b"STORE 2 +FLAGS (\\Seen)")
    assert lines == [] and done == b"s3 " + EXPUNGED, (lines, done)
    lines, done = _run(a, b"n", b"NOOP")
    assert lines == [b"* 2 EXPUNGE"], lines
    lines, done = _run(a, b"u", b"FETCH 1:* (UID FLAGS)")
    assert lines == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))", b"* 2 FETCH (UID 3 FLAGS (\\Flagged \\Recent))",
                     b"* 3 FETCH (UID 4 FLAGS (\\Recent))"], lines
    a.close()


def test_search_leaves_the_expunged_message_out_and_keeps_the_numbers(mailserver, user):
    _three(box(mailserver, user))
    port = mailserver.port("imap")
    a = _session(port, user)
    _expunge_second(port, user)
    box(mailserver, user).deliver(message("m4", "body 4"))
    lines, done = _run(a, b"q1", b"SEARCH ALL")
    _no_expunge(lines)
    assert lines[-1] == b"* SEARCH 1 3 4" and b"* 4 EXISTS" in lines, lines
    assert done == b"q1 OK [EXPUNGEISSUED] SEARCH completed"
    lines, done = _run(a, b"q2", b"SEARCH BODY body")
    assert lines == [b"* SEARCH 1 3 4"], lines
    _numbers_after = _run(a, b"n", b"NOOP")
    assert _numbers_after[0] == [b"* 2 EXPUNGE"], _numbers_after
    lines, done = _run(a, b"q3", b"SEARCH ALL")
    assert lines == [b"* SEARCH 1 2 3"] and done == b"q3 OK SEARCH completed", (lines, done)
    a.close()


def test_uid_fetch_tells_the_expunge_after_its_data(mailserver, user, monkeypatch):
    """UID FETCH may send EXPUNGE. Inside its rescan throttle it does not look at the disk
    first: a message found gone is answered empty, and its EXPUNGE follows the data (as
    Dovecot does), so no FETCH line carries a number from after it."""
    monkeypatch.setattr(commandbase, "RESCAN_THROTTLE_S", 60.0)
    _three(box(mailserver, user))
    port = mailserver.port("imap")
    a = _session(port, user)
    lines, done = _run(a, b"u1", b"UID FETCH 1:* (FLAGS)")           # looks at the disk
    assert len(lines) == 3 and done == b"u1 OK FETCH completed", lines
    _expunge_second(port, user)
    lines, done = _run(a, b"u2", b"UID FETCH 1:* (" + SUBJECT + b")")  # within the throttle
    assert lines == [b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {15}",
                     b"* 2 FETCH (UID 2 BODY[HEADER.FIELDS (SUBJECT)] NIL)",
                     b"* 3 FETCH (UID 3 BODY[HEADER.FIELDS (SUBJECT)] {15}",
                     b"* 2 EXPUNGE"], lines
    assert done == b"u2 " + EXPUNGED
    lines, done = _run(a, b"u3", b"FETCH 1:* (UID)")
    assert lines == [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 3)"], lines
    assert _run(a, b"n", b"NOOP")[0] == []
    a.close()


def test_uid_search_tells_the_expunge_of_a_ghost_before_its_result(mailserver, user, monkeypatch):
    """SEARCH left the expunged message numbered; UID SEARCH, even inside its rescan
    throttle, tells the EXPUNGE first and answers with the disk's messages."""
    monkeypatch.setattr(commandbase, "RESCAN_THROTTLE_S", 60.0)
    _three(box(mailserver, user))
    port = mailserver.port("imap")
    a = _session(port, user)
    _expunge_second(port, user)
    lines, done = _run(a, b"q", b"SEARCH ALL")
    assert lines == [b"* SEARCH 1 3"], lines
    lines, done = _run(a, b"u", b"UID SEARCH ALL")
    assert lines == [b"* 2 EXPUNGE", b"* SEARCH 1 3"] and done == b"u OK SEARCH completed", (lines, done)
    a.close()


def test_a_failing_fetch_does_not_tell_the_expunge_either(mailserver, user):
    """FETCH answered NO (here BINARY of an unknown transfer encoding) is still FETCH."""
    md = box(mailserver, user)
    _three(md)
    md.deliver(b"Subject: odd\nContent-Transfer-Encoding: x-odd\n\nbody\n")
    port = mailserver.port("imap")
    a = _session(port, user)
    _expunge_second(port, user)
    lines, done = _run(a, b"f", b"FETCH 4 (BINARY.PEEK[1])")
    _no_expunge(lines)
    assert done.startswith(b"f NO [UNKNOWN-CTE]"), done
    assert _run(a, b"n", b"NOOP")[0] == [b"* 2 EXPUNGE"]
    a.close()


def test_a_large_message_expunged_before_it_is_streamed_is_nil(mailserver, user):
    """A whole large message is streamed from its file (bigfetch): gone, its BODY[] is NIL."""
    md = box(mailserver, user)
    md.deliver(message("m1", "body 1"))
    md.deliver(message("big", "x" * 100 + "\n" * 1 + ("y" * 1000 + "\n") * 1500))
    md.deliver(message("m3", "body 3"))
    port = mailserver.port("imap")
    a = _session(port, user)
    _expunge_second(port, user)
    lines, done = _run(a, b"f", b"FETCH 2 (UID BODY.PEEK[])")
    assert lines == [b"* 2 FETCH (UID 2 BODY[] NIL)"] and done == b"f " + EXPUNGED, (lines, done)
    _numbers_after_noop(a)
    a.close()


# -- two serving processes ----------------------------------------------------------------

def _pid_of_newest_imap(root, known: set) -> int | None:
    out = mailctl(root, "who", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    sessions = data["sessions"] if isinstance(data, dict) else data
    pids = {s["pid"] for s in sessions if s["protocol"] == "imap"} - known
    return pids.pop() if len(pids) == 1 else None


def test_across_two_serving_processes(tmp_path):
    """Session A in one serving process, B (who expunges) in the other: A's FETCH, STORE
    and SEARCH keep its numbers, NOOP tells the EXPUNGE."""
    address = "alice@example.com"
    root = make_root(tmp_path, accounts={address: PASSWORD}, settings={"server.processes": 2, "auth.allow_plaintext": True})
    from engine.maildir import Maildir
    _three(Maildir.for_account(root, "example.com", "alice"))
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        port = proc.ports["imap"]
        a = _session(port, address)
        a_pid = _pid_of_newest_imap(root, set())
        for _ in range(40):                      # B in the other process
            b = _session(port, address)
            if _pid_of_newest_imap(root, {a_pid}) is not None:
                break
            b.close()
            time.sleep(0.1)
        else:
            raise AssertionError("the kernel never gave the second session to the other process")
        assert b.cmd(b"STORE 2 +FLAGS.SILENT (\\Deleted)", b"b1").startswith(b"b1 OK")
        assert _run(b, b"b2", b"EXPUNGE") == ([b"* 2 EXPUNGE"], b"b2 OK EXPUNGE completed")
        lines, done = _run(a, b"f", b"FETCH 1:3 (UID " + SUBJECT + b")")
        _no_expunge(lines)
        assert [x.split(b" BODY")[0] for x in lines] == [b"* 1 FETCH (UID 1", b"* 2 FETCH (UID 2",
                                                          b"* 3 FETCH (UID 3"], lines
        assert lines[1].endswith(b"NIL)") and done == b"f " + EXPUNGED, (lines, done)
        lines, done = _run(a, b"s", b"STORE 1:3 +FLAGS (\\Seen)")
        _no_expunge(lines)
        assert [x.split(b" (")[0] for x in lines] == [b"* 1 FETCH", b"* 3 FETCH"], lines
        lines, done = _run(a, b"q", b"SEARCH SEEN")
        assert lines == [b"* SEARCH 1 3"] and done == b"q OK [EXPUNGEISSUED] SEARCH completed", (lines, done)
        _numbers_after_noop(a)
        a.close()
        b.close()
