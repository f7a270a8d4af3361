"""SORT, THREAD and ESEARCH as webmail uses them (Roundcube, SnappyMail), with another
session changing the mailbox between two listings, and hostile SORT/SEARCH input that
gets a clear BAD while the connection keeps serving."""
from __future__ import annotations

import re

from helpers_mail import add_users, imap, maildir, new_root, running

USER = "alice@example.com"


def mail(n: int, subject: str, date: str, refs: str = "") -> bytes:
    return (f"From: User {n} <u{n}@example.org>\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
            f"Date: {date}\r\nMessage-ID: <{n}@list>\r\n" + (f"References: {refs}\r\n" if refs else "")
            + "\r\n" + "x" * n + "\r\n").encode()


def untagged(c, name: str) -> bytes:
    return c.untagged_responses.pop(name, [b""])[-1]


def test_roundcube_style_listing_follows_another_sessions_changes(tmp_path):
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    md = maildir(root)
    md.deliver(mail(1, "Plans", "Mon, 02 Jan 2023 10:00:00 +0000"))
    md.deliver(mail(2, "Re: Plans", "Tue, 03 Jan 2023 10:00:00 +0000", "<1@list>"))
    md.deliver(mail(3, "Other", "Sun, 01 Jan 2023 10:00:00 +0000"))
    with running(root, ("imap",)) as srv:
        c = imap(srv, USER)
        assert "SORT" in c.capabilities and "THREAD=REFERENCES" in c.capabilities
        c.select("INBOX")
        # Roundcube: message list sorted by arrival, newest first; threads; counts
        assert c.uid("SORT", "(REVERSE ARRIVAL)", "UTF-8", "ALL")[1] == [b"3 2 1"]
        assert c.uid("SORT", "(DATE)", "UTF-8", "ALL")[1] == [b"3 1 2"]
        assert c.uid("THREAD", "REFERENCES", "UTF-8", "ALL")[1] == [b"(3)(1 2)"]
        typ, data = c.uid("SEARCH", "RETURN", "(COUNT MIN MAX ALL)", "ALL")
        assert typ == "OK" and untagged(c, "ESEARCH").endswith(b"UID MIN 1 MAX 3 ALL 1:3 COUNT 3")
        # SnappyMail: ESORT
        c.uid("SORT", "RETURN", "(ALL COUNT)", "(REVERSE DATE)", "UTF-8", "ALL")
        assert untagged(c, "ESEARCH").endswith(b"UID ALL 2,1,3 COUNT 3")
        # another session: a reply arrives, the first message goes
        other = imap(srv, USER)
        other.select("INBOX")
        other.append("INBOX", None, None, mail(4, "Re: Re: Plans", "Wed, 04 Jan 2023 10:00:00 +0000",
                                               "<1@list> <2@list>"))
        other.uid("STORE", "1", "+FLAGS.SILENT", r"(\Deleted)")
        other.expunge()
        other.logout()
        c.noop()
        assert c.uid("SORT", "(REVERSE ARRIVAL)", "UTF-8", "ALL")[1] == [b"4 3 2"]
        assert c.uid("THREAD", "REFERENCES", "UTF-8", "ALL")[1] == [b"(3)(2 4)"]
        assert c.sort("(SUBJECT)", "UTF-8", "ALL")[1] == [b"2 1 3"]
        assert c.thread("ORDEREDSUBJECT", "UTF-8", "ALL")[1] == [b"(2)(1 3)"]
        c.logout()


def test_hostile_sort_and_search_input_gets_bad_and_the_session_goes_on(tmp_path):
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    maildir(root).deliver(mail(1, "one", "Mon, 02 Jan 2023 10:00:00 +0000"))
    with running(root, ("imap",)) as srv:
        c = imap(srv, USER)
        c.select("INBOX")
        sock = c.socket()

        def raw(line: bytes) -> bytes:
            sock.sendall(line + b"\r\n")
            out = b""
            while not re.search(rb"(^|\r\n)z [A-Z]+ [^\r\n]*\r\n$", out):
                chunk = sock.recv(65536)
                assert chunk, out[-300:]
                out += chunk
            return out
        huge_keys = b"z SORT (" + b"REVERSE DATE " * 30000 + b") UTF-8 ALL"
        assert b"z BAD" in raw(huge_keys)
        assert b"z BAD" in raw(b"z SORT (DATE) UTF-8 " + b"(" * 5000 + b"ALL" + b")" * 5000)
        assert b"z BAD" in raw(b"z THREAD REFERENCES UTF-8 " + b"NOT " * 20000 + b"ALL")
        assert b"z BAD" in raw(b"z SEARCH RETURN (" + b"PARTIAL 1:2 " * 1000 + b"BOGUS) ALL")
        assert b"z OK" in raw(b"z SEARCH RETURN (SAVE) ALL")
        assert b"* SEARCH 1\r\n" in raw(b"z SEARCH $")
        assert b"z BAD" in raw(b"z SORT RETURN (SAVE) (NOPE) UTF-8 ALL")
        out = raw(b"z SEARCH $")                 # a SAVE that failed leaves $ empty (RFC 5182)
        assert b"* SEARCH\r\n" in out and b"z OK" in out
        out = raw(b"z FETCH $ (UID)")
        assert b"* " not in out and b"z OK" in out
        assert b"z BAD" in raw(b"z SEARCH RETURN (SAVE) YOUNGER 99999999999999999999999")
        out = raw(b"z SORT (DATE) UTF-8 ALL")
        assert b"* SORT 1\r\n" in out and b"z OK" in out
        # UID EXPUNGE $ (RFC 5182 applies $ to every sequence set): empty $ expunges nothing
        raw(b"z STORE 1 +FLAGS.SILENT (\\Deleted)")
        out = raw(b"z UID EXPUNGE $")
        assert b"EXPUNGE\r\n" not in out and b"z OK" in out
        raw(b"z SEARCH RETURN (SAVE) DELETED")
        assert b"* 1 EXPUNGE\r\n" in raw(b"z UID EXPUNGE $")
        c.logout()
