"""What a session hears of a mailbox other sessions change (issue 13, defect 4):
a keyword new to the mailbox comes in FLAGS and PERMANENTFLAGS before the FETCH or
EXISTS that uses it, and a message is \\Recent in exactly one session, the first to
see it, however it arrived (delivery, COPY, APPEND) and whichever serving process that
session runs in (RFC 3501 §2.3.2, §7.2.6)."""
from __future__ import annotations

import imaplib
import re

from helpers_mail import box, imap, mailserver, message, user  # noqa: F401 - pytest fixtures, used as test arguments
from helpers_raw import Raw
from helpers_server import IMAP4From, imap_sessions_in_two_processes, make_root, serve_process, wait_for_processes


def _raw(srv, address: str, folder: str = "INBOX", verb: str = "SELECT") -> tuple[Raw, list[bytes]]:
    r = Raw(srv.port("imap"))
    r.login(address)
    r.send(f"s1 {verb} {folder}\r\n".encode())
    lines = r.until_tag(b"s1")
    assert lines[-1].startswith(b"s1 OK"), lines
    return r, lines


def _noop(r: Raw) -> list[bytes]:
    r.send(b"n1 NOOP\r\n")
    lines = r.until_tag(b"n1")
    assert lines[-1].startswith(b"n1 OK"), lines
    return lines[:-1]


def _index(lines: list[bytes], pattern: bytes) -> int:
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert found, (pattern, lines)
    return found[0]


def _count(lines: list[bytes], word: bytes) -> int | None:
    found = [int(m[1]) for line in lines if (m := re.fullmatch(rb"\* (\d+) " + word, line))]
    return found[-1] if found else None


# -- FLAGS and PERMANENTFLAGS ------------------------------------------------------

def test_keyword_set_by_another_session_comes_in_flags_before_its_fetch(mailserver, user):
    box(mailserver, user).deliver(message("one"))
    a, selected = _raw(mailserver, user)
    assert not any(b"$Project" in line for line in selected)
    b = imap(mailserver, user)
    b.select("INBOX")
    assert b.store("1", "+FLAGS", "($Project)")[0] == "OK"
    lines = _noop(a)
    flags = _index(lines, rb"^\* FLAGS \(.*\$Project")
    perm = _index(lines, rb"^\* OK \[PERMANENTFLAGS \(.*\$Project.*\\\*\)\]")
    fetch = _index(lines, rb"^\* 1 FETCH .*\$Project")
    assert flags < fetch and perm < fetch, lines
    # Told once: the next update has no FLAGS line.
    assert b.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
    assert not any(line.startswith(b"* FLAGS") for line in _noop(a))
    a.close()
    b.logout()


def test_own_store_of_a_new_keyword_announces_it_first(mailserver, user):
    box(mailserver, user).deliver(message("one"))
    a, _ = _raw(mailserver, user)
    a.send(b"s2 STORE 1 +FLAGS ($Mine)\r\n")
    lines = a.until_tag(b"s2")
    assert lines[-1].startswith(b"s2 OK"), lines
    assert _index(lines, rb"^\* FLAGS \(.*\$Mine") < _index(lines, rb"^\* 1 FETCH .*\$Mine"), lines
    assert _index(lines, rb"^\* OK \[PERMANENTFLAGS \(.*\$Mine") < _index(lines, rb"^\* 1 FETCH"), lines
    a.send(b"s3 STORE 1 -FLAGS ($Mine)\r\n")      # nothing new: no FLAGS again
    assert not any(line.startswith(b"* FLAGS") for line in a.until_tag(b"s3"))
    a.close()


def test_another_sessions_keyword_in_our_store_or_fetch_reply_comes_in_flags_first(mailserver, user):
    """B has not looked since A's keyword; B's STORE of a system flag, and its FETCH
    that sets \\Seen, show the message's real flags: the keyword is told first."""
    md = box(mailserver, user)
    md.deliver(message("one"))
    md.deliver(message("two"))
    b, _ = _raw(mailserver, user)
    a = imap(mailserver, user)
    a.select("INBOX")
    assert a.store("1:2", "+FLAGS", "($FromA)")[0] == "OK"
    b.send(b"s2 STORE 1 +FLAGS (\\Flagged)\r\n")
    lines = b.until_tag(b"s2")
    assert lines[-1].startswith(b"s2 OK"), lines
    assert _index(lines, rb"^\* FLAGS \(.*\$FromA") < _index(lines, rb"^\* 1 FETCH .*\$FromA"), lines
    assert _index(lines, rb"^\* OK \[PERMANENTFLAGS \(.*\$FromA") < _index(lines, rb"^\* 1 FETCH"), lines
    assert a.store("2", "+FLAGS", "($Later)")[0] == "OK"
    b.send(b"s3 FETCH 2 (BODY[TEXT])\r\n")
    lines = b.until_tag(b"s3")
    assert lines[-1].startswith(b"s3 OK"), lines
    assert _index(lines, rb"^\* FLAGS \(.*\$Later") < _index(lines, rb"^\* 2 FETCH"), lines
    b.close()
    a.logout()


def test_appended_keyword_comes_in_flags_before_exists(mailserver, user):
    box(mailserver, user).deliver(message("one"))
    a, _ = _raw(mailserver, user)
    e, _ = _raw(mailserver, user, verb="EXAMINE")
    b = imap(mailserver, user)
    assert b.append("INBOX", "($Invoice)", None, message("two"))[0] == "OK"
    lines = _noop(a)
    assert _index(lines, rb"^\* FLAGS \(.*\$Invoice") < _index(lines, rb"^\* 2 EXISTS"), lines
    lines = _noop(e)                           # read-only: the FLAGS, and no flag is permanent
    assert _index(lines, rb"^\* FLAGS \(.*\$Invoice") < _index(lines, rb"^\* 2 EXISTS"), lines
    assert _index(lines, rb"^\* OK \[PERMANENTFLAGS \(\)\]") >= 0
    for r in (a, e):
        r.close()
    b.logout()


# -- \Recent -----------------------------------------------------------------------

def test_copied_and_appended_messages_are_recent_to_the_selecting_session_only(mailserver, user):
    md = box(mailserver, user)
    md.deliver(message("old"), flags=["\\Seen"])
    md.create_folder("Work")
    for i in range(3):
        md.deliver(message(f"work {i}"), folder="Work")
    a, selected = _raw(mailserver, user)
    assert _count(selected, b"RECENT") == 0
    b = imap(mailserver, user)
    b.select("Work")
    assert b.copy("1:3", "INBOX")[0] == "OK"
    lines = _noop(a)
    assert _count(lines, b"EXISTS") == 4 and _count(lines, b"RECENT") == 3, lines
    a.send(b"s2 SEARCH RECENT\r\n")
    assert a.until_tag(b"s2")[0] == b"* SEARCH 2 3 4"
    # A third session comes later: A saw them first, so none is recent to it.
    c = imap(mailserver, user)
    c.select("INBOX")
    assert c.untagged_responses["RECENT"] == [b"0"]
    assert b.append("INBOX", None, None, message("appended"))[0] == "OK"
    lines = _noop(a)
    assert _count(lines, b"EXISTS") == 5 and _count(lines, b"RECENT") == 4, lines
    typ, _ = c.noop()
    assert c.untagged_responses.get("RECENT", [b"0"])[-1] == b"0"
    assert c.search(None, "RECENT") == ("OK", [b""])
    # And a session opening the mailbox afresh finds nothing recent either.
    d, selected = _raw(mailserver, user)
    assert _count(selected, b"RECENT") == 0 and _count(selected, b"EXISTS") == 5
    for r in (a, d):
        r.close()
    b.logout()
    c.logout()


def test_a_mailbox_selected_empty_counts_what_arrives(mailserver, user):
    md = box(mailserver, user)
    md.create_folder("Empty")
    a, selected = _raw(mailserver, user, "Empty")
    assert _count(selected, b"EXISTS") == 0 and _count(selected, b"RECENT") == 0
    b = imap(mailserver, user)
    for i in range(3):
        assert b.append("Empty", "(\\Seen)", None, message(f"m{i}"))[0] == "OK"
    lines = _noop(a)
    assert _count(lines, b"EXISTS") == 3 and _count(lines, b"RECENT") == 3, lines
    a.close()
    b.logout()


PW = "shared-updates-pw-1"
ALICE = "alice@example.com"


def _recent_after_noop(c: imaplib.IMAP4) -> int:
    c.untagged_responses.pop("RECENT", None)
    assert c.noop()[0] == "OK"
    typ, data = c.search(None, "RECENT")
    return len(data[0].split())


def test_recent_in_exactly_one_session_across_serving_processes(tmp_path):
    root = make_root(tmp_path, accounts={ALICE: PW},
                     settings={"server.processes": 2, "auth.allow_plaintext": True, "queue.offline": True})
    from engine.maildir import Maildir
    md = Maildir.for_account(root, "example.com", "alice")
    md.create()
    md.create_folder("Work")
    for i in range(2):
        md.deliver(message(f"work {i}"), folder="Work", flags=["\\Seen"])
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        a, b = imap_sessions_in_two_processes(root, proc.ports["imap"], ALICE, PW)
        a.select("INBOX")
        b.select("INBOX")
        for i in range(3):
            md.deliver(message(f"m{i}"))                  # into new/
        assert _recent_after_noop(a) == 3
        assert _recent_after_noop(b) == 0
        c = IMAP4From("127.0.0.50", proc.ports["imap"])
        c.login(ALICE, PW)
        c.select("Work")
        assert c.copy("1:2", "INBOX")[0] == "OK"       # into cur/, by a third session
        assert _recent_after_noop(b) == 2                 # B looks first this time
        assert _recent_after_noop(a) == 3
        for s in (a, b, c):
            s.logout()


def test_claims_of_another_uidvalidity_or_garbled_count_for_nothing(tmp_path):
    """mailctl-recent is read only for the UIDVALIDITY it names: after the UIDs were
    given out again (a restore), or when it is garbled, the messages in new/ are recent."""
    from engine.maildir import RECENT_CLAIMS, Maildir, claim_recent
    from engine.root import Root
    md = Maildir.for_account(Root(tmp_path), "example.com", "alice")
    md.create()
    md.deliver(message("seen"), flags=["\\Seen"])        # into cur/
    md.deliver(message("new"))                           # into new/
    inbox = md.folder("INBOX")
    msgs = inbox.sync()
    validity = inbox.uidvalidity()
    assert claim_recent(inbox.path, validity, msgs, 2, write=False) == {2}
    assert not (inbox.path / RECENT_CLAIMS).exists()     # EXAMINE writes nothing
    assert claim_recent(inbox.path, validity, msgs, 2, write=True) == {2}
    assert (inbox.path / RECENT_CLAIMS).read_text() == f"{validity} 2\n"
    assert claim_recent(inbox.path, validity, msgs, 2, write=True) == set()
    for text in (f"{validity + 1} 2\n", "garbage", ""):
        (inbox.path / RECENT_CLAIMS).write_text(text)
        assert claim_recent(inbox.path, validity, msgs, 2, write=True) == {2}
    assert inbox.status()["recent"] == 0


def _select_at_once(sessions: tuple, folder: str) -> list[int]:
    """Each session SELECTs folder at the same moment; the \\Recent count each one got."""
    import threading
    start = threading.Barrier(len(sessions))
    counts: list[int] = [-1] * len(sessions)

    def select(i: int) -> None:
        start.wait()
        typ, _ = sessions[i].select(folder)
        assert typ == "OK"
        counts[i] = int(sessions[i].untagged_responses["RECENT"][-1])

    threads = [threading.Thread(target=select, args=(i,)) for i in range(len(sessions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return counts


def test_copied_into_a_never_selected_folder_recent_in_exactly_one_session(tmp_path):
    """COPY puts the copies straight into cur/ of a folder no session has selected yet:
    they are recent all the same (STATUS says so), and of two sessions in two serving
    processes that SELECT it at once, exactly one gets them (RFC 3501 §2.3.2)."""
    root = make_root(tmp_path, accounts={ALICE: PW},
                     settings={"server.processes": 2, "auth.allow_plaintext": True, "queue.offline": True})
    from engine.maildir import Maildir
    md = Maildir.for_account(root, "example.com", "alice")
    md.create()
    md.create_folder("Later")
    md.deliver(message("filed before"), folder="Later", flags=["\\Seen"])   # by an import: not recent
    for i in range(3):
        md.deliver(message(f"m{i}"), flags=["\\Seen"])
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        a, b = imap_sessions_in_two_processes(root, proc.ports["imap"], ALICE, PW)
        c = IMAP4From("127.0.0.50", proc.ports["imap"])
        c.login(ALICE, PW)
        c.select("INBOX")
        assert c.copy("1:3", "Later")[0] == "OK"
        typ, data = c.status("Later", "(MESSAGES RECENT)")
        assert data[0].endswith(b"(MESSAGES 4 RECENT 3)"), data
        assert sorted(_select_at_once((a, b), "Later")) == [0, 3]
        for s in (a, b):
            assert len(s.search(None, "RECENT")[1][0].split()) in (0, 3)
        # A third session comes later: nothing is recent to it.
        assert c.select("Later")[0] == "OK"
        assert c.untagged_responses["RECENT"] == [b"0"]
        for s in (a, b, c):
            s.logout()


def test_appended_with_flags_into_a_never_selected_folder_is_recent(mailserver, user):
    """APPEND with flags goes straight into cur/: recent to the first session to select the
    folder, as is what waits in new/; what a delivery or an import filed into cur/
    before stays not recent."""
    md = box(mailserver, user)
    md.create_folder("Fresh")
    md.deliver(message("filed"), folder="Fresh", flags=["\\Seen"])     # cur/, not recent
    md.deliver(message("waiting"), folder="Fresh")                      # new/, recent
    md.folder("Fresh").sync()                                           # it has UID 2 now
    b = imap(mailserver, user)
    assert b.append("Fresh", "(\\Seen)", None, message("appended"))[0] == "OK"
    assert b.status("Fresh", "(RECENT)")[1][0].endswith(b"(RECENT 2)")
    a, selected = _raw(mailserver, user, "Fresh")
    assert _count(selected, b"EXISTS") == 3 and _count(selected, b"RECENT") == 2, selected
    a.send(b"s2 SEARCH RECENT\r\n")
    assert a.until_tag(b"s2")[0] == b"* SEARCH 2 3"
    a.close()
    b.logout()
