"""IMAP4rev2 (RFC 9051) beside IMAP4rev1: a whole rev2 session over a raw socket (no
client in Debian speaks rev2: imaplib, mutt and offlineimap are rev1 clients), a rev1
session on the same mailbox that sees what it always saw, and the switch itself.
The exact replies of each RFC 9051 change are in tests/conformance/rev2_*.imap."""
from __future__ import annotations

import re

import pytest

from helpers_mail import PASSWORD
from helpers_raw import Raw
from helpers_server import imap_sessions_in_two_processes, make_root, serve_process, wait_for_processes

ALICE = "alice@example.com"
MESSAGE = b"From: bob@example.org\r\nSubject: hello\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("rev2"), accounts={ALICE: PASSWORD},
                     settings={"server.processes": 2, "auth.allow_plaintext": True, "queue.offline": True,
                               "mailbox.max_sessions_per_user": 0, "mailbox.max_userip_connections": 0})
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        yield root, proc.ports["imap"]


class Session(Raw):
    """A raw client that numbers its tags and keeps every line of each reply."""
    n = 0

    def run(self, text: str | bytes) -> list[bytes]:
        self.n += 1
        tag = b"c%d" % self.n
        self.send(tag + b" " + (text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.until_tag(tag)

    def ok(self, text: str | bytes) -> list[bytes]:
        lines = self.run(text)
        assert lines[-1].split(b" ")[1] == b"OK", lines
        return lines[:-1]

    def append(self, box: str, flags: str = "", message: bytes = MESSAGE) -> list[bytes]:
        self.send(b"a%d APPEND %s %s{%d+}\r\n" % (self.n, box.encode(), flags.encode() + b" " if flags else b"",
                                                   len(message)) + message + b"\r\n")
        lines = self.until_tag(b"a%d" % self.n)
        assert lines[-1].startswith(b"a%d OK" % self.n), lines
        return lines[:-1]


def connect(port: int, rev2: bool, folder: str) -> Session:
    s = Session(port)
    s.ok(f'LOGIN {ALICE} "{PASSWORD}"')
    if rev2:
        assert s.ok("ENABLE IMAP4rev2") == [b"* ENABLED IMAP4rev2"]
    return s


def fresh_folder(port: int, name: str) -> None:
    s = connect(port, False, name)
    s.ok(f"CREATE {name}")
    s.close()


def test_a_whole_rev2_session(server):
    root, port = server
    fresh_folder(port, "Whole")
    other = connect(port, False, "Whole")
    other.append("Whole")                               # no flags: \Recent to the first to see it
    c = connect(port, True, "Whole")
    caps = c.ok("CAPABILITY")[0].split()
    assert caps[2:4] == [b"IMAP4rev1", b"IMAP4rev2"]     # beside each other, rev1 first
    for folded in (b"NAMESPACE", b"UNSELECT", b"UIDPLUS", b"ESEARCH", b"SEARCHRES", b"ENABLE", b"IDLE",
                   b"SASL-IR", b"LIST-EXTENDED", b"LIST-STATUS", b"MOVE", b"LITERAL+", b"BINARY",
                   b"SPECIAL-USE", b"STATUS=SIZE"):
        assert folded in caps, folded                   # what RFC 9051 folds in is on
    c.append("Whole", "($Forwarded $Junk)")
    sel = c.ok("SELECT Whole")
    assert not any(b"RECENT" in line or b"[UNSEEN" in line for line in sel), sel
    assert b'* LIST () "/" Whole' in sel and b"* 2 EXISTS" in sel
    flags = next(line for line in sel if line.startswith(b"* FLAGS"))
    assert b"$Forwarded" in flags and b"$Junk" in flags
    assert c.ok("FETCH 1:2 (FLAGS)") == [b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS ($Forwarded $Junk))"]
    c.ok("STORE 1 +FLAGS.SILENT ($Phishing $NotJunk $MDNSent)")
    assert c.ok("SEARCH KEYWORD $Phishing") == [b'* ESEARCH (TAG "c%d") ALL 1' % c.n]
    assert c.ok("UID SEARCH RETURN (COUNT) ALL") == [b'* ESEARCH (TAG "c%d") UID COUNT 2' % c.n]
    assert c.run("SEARCH NEW")[-1].startswith(b"c%d BAD" % c.n)
    # deprecated, still answered: RFC822 items, LSUB; CHECK (removed from rev2's grammar) too
    assert c.ok("FETCH 1 (RFC822.SIZE RFC822.HEADER)")[0].startswith(b"* 1 FETCH (RFC822.SIZE 47 RFC822.HEADER {41}")
    c.ok("CHECK")
    c.ok('LSUB "" "*"')
    # IDLE: another session's new message is EXISTS alone
    c.send(b"i1 IDLE\r\n")
    assert c.line().startswith(b"+ ")
    other.append("Whole")
    assert c.line() == b"* 3 EXISTS"
    c.send(b"DONE\r\n")
    assert c.until_tag(b"i1")[-1].startswith(b"i1 OK")
    moved = c.ok("UID MOVE 3 INBOX")
    assert moved[0].startswith(b"* OK [COPYUID ") and moved[1:] == [b"* 3 EXPUNGE"]
    c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert c.ok("STATUS Whole (MESSAGES DELETED)") == [b"* STATUS Whole (MESSAGES 2 DELETED 1)"]
    assert c.ok("NAMESPACE")[0].startswith(b'* NAMESPACE (("" "/"))')
    c.ok("UNSELECT")
    assert c.run("LOGOUT")[0] == b"* BYE Logging out"
    # the message the rev2 session saw first was claimed: a rev1 session has it not \Recent,
    # while the one moved to INBOX behind it is
    assert b"* 0 RECENT" in other.ok("SELECT Whole")
    rev1_flags = other.ok("FETCH 1:2 (FLAGS)")
    assert not any(b"\\Recent" in line for line in rev1_flags), rev1_flags


def test_a_rev1_session_sees_no_change(server):
    """The same commands from a client that never said ENABLE IMAP4rev2 get rev1's answers,
    while a rev2 session works on the same mailbox beside it."""
    root, port = server
    fresh_folder(port, "Entw&APw-rfe")
    rev2 = connect(port, True, "")
    rev2.ok('SELECT "Entwürfe"')
    c = connect(port, False, "")
    c.append("Entw&APw-rfe")
    c.append("Entw&APw-rfe", "(\\Seen)")
    sel = c.ok("SELECT Entw&APw-rfe")
    assert b"* 2 RECENT" in sel and b"* OK [UNSEEN 1] First unseen" in sel
    assert not any(line.startswith(b"* LIST") for line in sel)
    assert c.ok("FETCH 1 (FLAGS)") == [b"* 1 FETCH (FLAGS (\\Recent))"]
    assert c.ok("SEARCH RECENT") == [b"* SEARCH 1 2"]
    assert c.ok("SEARCH ALL") == [b"* SEARCH 1 2"]
    assert c.ok("STATUS INBOX (RECENT)")[0].startswith(b"* STATUS INBOX (RECENT ")
    assert c.run("STATUS INBOX (DELETED)")[-1].startswith(b"c%d BAD" % c.n)
    assert c.ok('LIST "" "Entw*"') == [b'* LIST (\\HasNoChildren) "/" Entw&APw-rfe']
    c.ok("CREATE Other")
    assert not any(b"[CLOSED]" in line for line in c.ok("SELECT Other"))   # rev1: only with QRESYNC
    # the rev2 session beside it: told of the new messages without RECENT
    assert rev2.ok("NOOP") == [b"* 2 EXISTS"]
    assert rev2.ok("SEARCH ALL") == [b'* ESEARCH (TAG "c%d") ALL 1:2' % rev2.n]


def test_enable_while_selected_stops_recent_and_rev2_lists_missing_parents(server):
    root, port = server
    from engine.maildir import Maildir
    md = Maildir.for_account(root, "example.com", "alice")
    for sub in ("cur", "new", "tmp"):      # a folder whose parent does not exist (made by hand)
        (md.path / ".Lone.Leaf" / sub).mkdir(parents=True)
    fresh_folder(port, "Switch")
    c = connect(port, False, "")
    c.append("Switch")
    assert b"* 1 RECENT" in c.ok("SELECT Switch")
    assert c.ok('LIST "" "Lone*"') == [b'* LIST (\\Noselect \\HasChildren) "/" Lone',
                                        b'* LIST (\\HasNoChildren) "/" Lone/Leaf']
    assert c.ok("ENABLE IMAP4rev2") == [b"* ENABLED IMAP4rev2"]
    assert c.ok("FETCH 1 (FLAGS)") == [b"* 1 FETCH (FLAGS ())"]
    told = c.append("Switch") + c.ok("NOOP")     # our own APPEND to the selected mailbox
    assert told == [b"* 2 EXISTS"], told
    assert c.ok('LIST "" "Lone*"') == [b'* LIST (\\NonExistent \\HasChildren) "/" Lone',
                                        b'* LIST (\\HasNoChildren) "/" Lone/Leaf']
    # enabling again changes nothing and says nothing new
    assert c.ok("ENABLE imap4REV2") == [b"* ENABLED"]


def test_rev2_names_that_no_folder_may_have_are_refused_cleanly(server):
    root, port = server
    c = connect(port, True, "")
    for name in ('"a\\\\b"', '"a//b"', '"/lead"', '"x\tz"'):
        reply = c.run(f"CREATE {name}")[-1]
        assert re.match(rb"c\d+ (NO|BAD) ", reply), (name, reply)
        assert str(root.path).encode() not in reply and b"Traceback" not in reply
    assert c.ok("NOOP") == []                          # the session goes on


def test_rev2_search_with_modseq_keeps_its_modseq(server):
    """SEARCH MODSEQ of a rev2 client is answered with ESEARCH, which then carries the
    MODSEQ that rev1's SEARCH reply ends with (RFC 7162 §3.1.5)."""
    root, port = server
    fresh_folder(port, "Modseq")
    c = connect(port, True, "")
    c.append("Modseq")
    c.append("Modseq")
    c.ok("SELECT Modseq (CONDSTORE)")
    reply = c.ok("SEARCH MODSEQ 1")
    assert re.fullmatch(rb'\* ESEARCH \(TAG "c%d"\) ALL 1:2 MODSEQ [1-9]\d*' % c.n, reply[0]), reply
    rev1 = connect(port, False, "")
    rev1.ok("SELECT Modseq (CONDSTORE)")
    assert re.fullmatch(rb"\* SEARCH 1 2 \(MODSEQ [1-9]\d*\)", rev1.ok("SEARCH MODSEQ 1")[0])


def test_rev2_catenate_url_names_stay_modified_utf7(server):
    """An IMAP URL (RFC 5092) writes a mailbox name the same for every session: a rev2
    session's CATENATE finds a folder by the URL's modified UTF-7 name."""
    root, port = server
    fresh_folder(port, "Stra&AN8-e")
    c = connect(port, True, "")
    c.append('"Straße"')
    reply = c.run('APPEND INBOX CATENATE (URL "/Stra&AN8-e/;UID=1")')
    assert reply[-1].startswith(b"c%d OK [APPENDUID " % c.n), reply


def test_a_rev2_session_claims_recent_for_a_rev1_session_in_another_process(tmp_path):
    """\\Recent is shared state (maildir/recent.py): the messages a rev2 session in one
    serving process saw first are not recent to a rev1 session in the other, although the
    rev2 session itself is told of no \\Recent at all."""
    root = make_root(tmp_path, accounts={ALICE: PASSWORD},
                     settings={"server.processes": 2, "auth.allow_plaintext": True, "queue.offline": True})
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        a, b = imap_sessions_in_two_processes(root, proc.ports["imap"], ALICE, PASSWORD)
        assert a.create("Claims")[0] == "OK"
        assert a.append("Claims", None, None, MESSAGE)[0] == "OK"
        assert a.enable("IMAP4rev2")[0] == "OK" and a.response("ENABLED") == ("ENABLED", [b"IMAP4rev2"])
        assert a.select("Claims") == ("OK", [b"1"])
        assert a.response("RECENT") == ("RECENT", [None])
        assert a.fetch("1", "(FLAGS)")[1] == [b"1 (FLAGS ())"]
        assert b.select("Claims") == ("OK", [b"1"])
        assert b.response("RECENT") == ("RECENT", [b"0"])
        assert b.fetch("1", "(FLAGS)")[1] == [b"1 (FLAGS ())"]
        for c in (a, b):
            c.logout()
