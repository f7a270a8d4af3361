"""A sequence set of one number (`FETCH 3`, `UID FETCH 7`), the most common set, takes a
short way in CommandBase.targets: it must select exactly what the same number written as
a range (`3:3`) selects, and refuse what the range refuses with the same words."""
from __future__ import annotations

from helpers_mail import mailserver, message, user  # noqa: F401 - pytest fixtures, used as test arguments
from helpers_raw import Raw


def _answer(r: Raw, command: bytes) -> list[bytes]:
    r.send(b"s " + command + b"\r\n")
    return r.until_tag(b"s")


def test_one_number_selects_what_the_range_of_it_selects(mailserver, user):
    r = Raw(mailserver.port("imap"))
    try:
        r.login(user)
        for i in range(6):
            data = message(subject=f"m{i}")
            r.send(b"a APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
            assert r.until_tag(b"a")[-1].startswith(b"a OK")
        assert r.cmd(b"SELECT INBOX").startswith(b"t1 OK")
        # UIDs 1 3 5 6 left: gaps on both sides of some numbers
        assert r.cmd(b"UID STORE 2,4 +FLAGS.SILENT (\\Deleted)").startswith(b"t1 OK")
        assert r.cmd(b"EXPUNGE").startswith(b"t1 OK")
        numbers = [b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"99", b"0", b"00", b"007",
                   b"4294967295", b"4294967296", b"12345678901"]
        for n in numbers:
            for command in (b"UID FETCH %s (UID FLAGS)", b"FETCH %s (UID FLAGS)",
                            b"UID STORE %s +FLAGS (\\Seen)", b"STORE %s -FLAGS (\\Seen)"):
                single = _answer(r, command % n)
                ranged = _answer(r, command % (n + b":" + n))
                # a malformed set is quoted whole in its BAD
                ranged = [x.replace(b"'%s:%s'" % (n, n), b"'%s'" % n) for x in ranged]
                assert single == ranged, (command % n, single, ranged)
        # the single forms answered at all: a present UID, a gap, a sequence number past the end
        assert _answer(r, b"UID FETCH 3 (UID)") == [b"* 2 FETCH (UID 3)", b"s OK FETCH completed"]
        assert _answer(r, b"UID FETCH 4 (UID)") == [b"s OK FETCH completed"]
        assert _answer(r, b"FETCH 5 (UID)")[-1].startswith(b"s BAD Invalid message sequence number 5")
    finally:
        r.close()
