"""IMAP details where RFC 3501 and its extensions (and Dovecot, the reference) say more
than the common path shows (issue 13): LSUB's unsubscribed parents, '[' in mailbox
names, LIST-EXTENDED attributes and selection, ENVELOPE and SEARCH of addresses written
with comments, IDLE past the command time limit, RENAME of the selected mailbox and of
INBOX. Each against a real server, with raw sockets and imaplib."""
from __future__ import annotations

import imaplib
import re
import time

import pytest

import dovecot
from helpers_mail import (PASSWORD, add_users, configure, fast_settings, mailserver, maildir,  # noqa: F401 - fixture
                          new_root, running, user)
from helpers_raw import Raw


def raw(srv, address: str) -> Raw:
    r = Raw(srv.port("imap"))
    r.login(address)
    return r


def untagged(lines: list[bytes], verb: bytes) -> list[bytes]:
    return [x for x in lines if x.startswith(b"* " + verb + b" ")]


# -- LSUB (RFC 3501 6.3.9) ------------------------------------------------------------

def test_lsub_percent_gives_an_unsubscribed_parent_as_noselect(mailserver, user):
    """RFC 3501 6.3.9: with foo/bar subscribed and foo not, LSUB "" % gives foo with
    \\Noselect. `*` reaches the subscribed name itself and gives no parent."""
    r = raw(mailserver, user)
    assert r.cmd(b"CREATE vl/b/c").startswith(b"t1 OK")
    assert r.cmd(b"SUBSCRIBE vl/b/c").startswith(b"t1 OK")
    r.send(b'l1 LSUB "" vl/%\r\n')
    lines = r.until_tag(b"l1")
    assert lines[-1].startswith(b"l1 OK")
    assert untagged(lines, b"LSUB") == [b'* LSUB (\\Noselect) "/" vl/b']
    r.send(b'l2 LSUB "" vl/*\r\n')
    lines = r.until_tag(b"l2")
    assert [x.rsplit(b" ", 1)[1] for x in untagged(lines, b"LSUB")] == [b"vl/b/c"]
    assert b"\\Noselect" not in lines[0]
    r.send(b'l3 LSUB "" %\r\n')
    names = {x.rsplit(b" ", 1)[1]: x for x in untagged(r.until_tag(b"l3"), b"LSUB")}
    assert b"vl" in names and b"\\Noselect" in names[b"vl"] and b"vl/b" not in names
    r.close()


# -- '[' is an ATOM-CHAR outside a fetch item's section -------------------------------

def test_a_bracket_in_a_mailbox_name_is_part_of_the_name(mailserver, user):
    r = raw(mailserver, user)
    assert r.cmd(b"SELECT foo[bar").startswith(b"t1 NO [NONEXISTENT]")
    assert r.cmd(b"CREATE foo[bar").startswith(b"t1 OK")
    assert r.cmd(b"SELECT foo[bar").startswith(b"t1 OK")
    r.send(b'l1 LIST "" foo*\r\n')
    assert untagged(r.until_tag(b"l1"), b"LIST") == [b'* LIST (\\HasNoChildren) "/" foo[bar']
    r.send(b"a1 APPEND foo[bar {19+}\r\nSubject: in brack\r\n\r\n")
    assert r.until_tag(b"a1")[-1].startswith(b"a1 OK")
    # in a fetch item '[' still opens the section, spaces and lists inside it
    r.send(b"f1 FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BINARY.SIZE[1])\r\n")
    lines = r.until_tag(b"f1")
    assert lines[-1].startswith(b"f1 OK") and b"BODY[HEADER.FIELDS (SUBJECT)]" in lines[0]
    assert r.cmd(b"FETCH 1 BODY[HEADER").startswith(b"t1 BAD")
    r.close()


# -- LIST-EXTENDED (RFC 5258) and SPECIAL-USE (RFC 6154) ------------------------------

def test_a_plain_list_gives_no_subscribed_attribute(mailserver, user):
    """\\Subscribed is a LIST-EXTENDED attribute: given for RETURN (SUBSCRIBED) or the
    SUBSCRIBED selection, never in a plain LIST."""
    r = raw(mailserver, user)
    assert r.cmd(b"CREATE Kept").startswith(b"t1 OK")
    assert r.cmd(b"SUBSCRIBE Kept").startswith(b"t1 OK")
    r.send(b'l1 LIST "" *\r\n')
    lines = untagged(r.until_tag(b"l1"), b"LIST")
    assert any(x.endswith(b" Kept") for x in lines) and not any(b"\\Subscribed" in x for x in lines)
    r.send(b'l2 LIST "" * RETURN (SUBSCRIBED)\r\n')
    lines = untagged(r.until_tag(b"l2"), b"LIST")
    kept = [x for x in lines if x.endswith(b" Kept")]
    assert len(kept) == 1 and b"\\Subscribed" in kept[0]
    r.send(b'l3 LIST (SUBSCRIBED) "" *\r\n')
    lines = untagged(r.until_tag(b"l3"), b"LIST")
    assert lines and all(b"\\Subscribed" in x for x in lines) and any(x.endswith(b" Kept") for x in lines)
    r.close()


def test_list_special_use_selection_lists_only_special_use_mailboxes(mailserver, user):
    r = raw(mailserver, user)
    assert r.cmd(b"CREATE Plain").startswith(b"t1 OK")
    r.send(b'l1 LIST (SPECIAL-USE) "" *\r\n')
    lines = r.until_tag(b"l1")
    assert lines[-1].startswith(b"l1 OK")
    found = {x.rsplit(b" ", 1)[1]: x for x in untagged(lines, b"LIST")}
    assert set(found) == {b"Sent", b"Drafts", b"Trash", b"Junk", b"Archive"}, lines
    assert all(b"\\" + name in found[name] for name in found)
    r.close()


# -- addresses written with comments --------------------------------------------------

COMMENTED = (b"From: user@domain.example (Real Name)\r\n"
             b"To: a@b.example (Other (nested) One), (lead) c@d.example\r\n"
             b"Cc: pat (x) @ host.example (Pat)\r\nSubject: commented\r\n\r\nbody\r\n")


def test_envelope_names_an_address_by_its_comment(mailserver, user):
    """user@host (Real Name): the ENVELOPE's name is "Real Name", as Dovecot gives it;
    nested comments stay whole, a comment before the address names nothing, and
    comments and spaces inside the addr-spec are no part of it."""
    maildir(mailserver.root, user.split("@")[0]).deliver(COMMENTED)
    c = imaplib.IMAP4("127.0.0.1", mailserver.port("imap"), timeout=20)
    c.login(user, PASSWORD)
    c.select("INBOX", readonly=True)
    for _ in range(2):   # made from the message, then from the folder's index
        typ, data = c.fetch("1", "(ENVELOPE)")
        assert typ == "OK"
        assert (b'(("Real Name" NIL "user" "domain.example")) ' * 3 +
                b'(("Other (nested) One" NIL "a" "b.example")(NIL NIL "c" "d.example")) '
                b'(("Pat" NIL "pat" "host.example"))') in data[0], data
    c.logout()


def test_envelopes_of_addresses_with_comments_and_groups_match_dovecot(tmp_path):
    root = new_root(tmp_path / "root")
    add_users(root, ["alice"])
    md = maildir(root)
    md.deliver(COMMENTED)
    md.deliver(b'From: "john doe"@x.example\r\nSender: John Q. Public <jqp@x.example> (c)\r\n'
               b"To: Team: a@x.org, B <b@y.org>;, undisclosed-recipients:;\r\n"
               b"Cc: <@route.example:r@x.example>, Name (comment) <n@x.example>\r\n"
               b"Bcc: a@b (x), (y) c@d (z)\r\nSubject: two\r\n\r\nbody\r\n")

    def envelopes(c):
        c.login("alice@example.com", PASSWORD)
        c.select("INBOX", readonly=True)
        typ, data = c.fetch("1:*", "(ENVELOPE)")
        c.logout()
        return data
    with running(root, ("imap",)) as srv:
        ours = envelopes(imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=20))
    with dovecot.dovecot_server(root.path, {"alice@example.com": PASSWORD}) as dc:
        theirs = envelopes(imaplib.IMAP4(dc.host, dc.imap_port, timeout=20))
    assert ours == theirs


def test_search_from_finds_an_address_written_with_comments(mailserver, user):
    md = maildir(mailserver.root, user.split("@")[0])
    md.deliver(COMMENTED)
    md.deliver(b"From: Other <other@else.example>\r\nSubject: other\r\n\r\nbody\r\n")
    c = imaplib.IMAP4("127.0.0.1", mailserver.port("imap"), timeout=20)
    c.login(user, PASSWORD)
    c.select("INBOX", readonly=True)
    found = {}
    for criteria in ('FROM "\\"Real Name\\" <user@domain.example>"', 'CC "pat@host.example"',
                     'FROM "user@domain.example"', 'OR FROM "nobody" CC "pat@host"'):
        typ, data = c.search(None, criteria)
        found[criteria] = data[0]
        # with a content key the search takes the general path: the same answer
        typ, data = c.search(None, criteria, 'NOT BODY "zzz"')
        assert data[0] == found[criteria], criteria
    assert found == {'FROM "\\"Real Name\\" <user@domain.example>"': b"1", 'CC "pat@host.example"': b"1",
                     'FROM "user@domain.example"': b"1", 'OR FROM "nobody" CC "pat@host"': b"1"}
    c.logout()


# -- IDLE and the command time limit (RFC 2177, RFC 3501 5.4) -------------------------

def test_idle_outlives_the_command_time_limit_and_ends_at_the_idle_timeout(tmp_path):
    """IDLE waits; the command time limit (1 s here) stops only commands that work, and
    IDLE ends at the idle timeout (30 minutes by default, 4 s here) with BYE."""
    root = new_root(tmp_path / "root")
    configure(root, fast_settings(**{"mailbox.command_time_limit_s": 1}))
    add_users(root, ["alice"])
    with running(root, ("imap",)) as srv:
        srv.runtime.settings.mailbox.idle_timeout_s = 4   # below the checked minimum: in-process only
        r = raw(srv, "alice@example.com")
        r.send(b"i1 IDLE\r\n")
        assert r.line().startswith(b"+ ")
        time.sleep(2.5)
        r.send(b"DONE\r\n")
        assert r.until_tag(b"i1")[-1] == b"i1 OK IDLE terminated"
        started = time.monotonic()
        r.send(b"i2 IDLE\r\n")
        assert r.line().startswith(b"+ ")
        assert r.line() == b"* BYE Autologout; idle for too long"
        assert 3 < time.monotonic() - started < 8
        with pytest.raises(ConnectionError):
            r.line()
        r.close()


# -- RENAME (RFC 3501 6.3.5) ----------------------------------------------------------

def test_rename_of_the_selected_mailbox_keeps_it_selected(mailserver, user):
    md = maildir(mailserver.root, user.split("@")[0])
    md.create_folder("Old")
    md.deliver(b"Subject: one\r\n\r\nbody\r\n", folder="Old")
    r = raw(mailserver, user)
    r.send(b"s1 SELECT Old\r\n")
    uidvalidity = re.search(rb"UIDVALIDITY (\d+)", b"\n".join(r.until_tag(b"s1"))).group(1)
    assert r.cmd(b"RENAME Old New") == b"t1 OK RENAME completed"
    assert r.cmd(b"NOOP") == b"t1 OK NOOP completed"
    r.send(b"f1 FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    lines = r.until_tag(b"f1")
    assert lines[-1].startswith(b"f1 OK") and lines[1] == b"Subject: one"
    r.send(b"f2 STORE 1 +FLAGS (\\Flagged)\r\n")
    assert r.until_tag(b"f2")[-1].startswith(b"f2 OK")
    r.send(b"f3 STATUS New (MESSAGES UIDVALIDITY)\r\n")
    assert r.until_tag(b"f3")[0] == b"* STATUS New (MESSAGES 1 UIDVALIDITY " + uidvalidity + b")"
    assert [m.flags for m in md.folder("New").sync()] == [frozenset({"\\Flagged"})]
    # a parent of the selected mailbox renamed: the child moves with it, still selected
    md.create_folder("New/Sub")
    assert r.cmd(b"SELECT New/Sub").startswith(b"t1 OK")
    assert r.cmd(b"RENAME New Newer") == b"t1 OK RENAME completed"
    r.send(b"a1 APPEND Newer/Sub {3+}\r\nx\r\n\r\n")
    lines = r.until_tag(b"a1")
    assert lines[-1].startswith(b"a1 OK") and b"* 1 EXISTS" in lines
    r.close()


@pytest.mark.parametrize("change", [b"RENAME Shared Elsewhere", b"DELETE Shared"])
def test_a_mailbox_renamed_or_deleted_under_another_session_ends_that_session(mailserver, user, change):
    """The other session has nothing true left to say of its mailbox: BYE, as Dovecot's
    "session state is inconsistent" (was NO [SERVERBUG] for every command after)."""
    md = maildir(mailserver.root, user.split("@")[0])
    md.create_folder("Shared")
    md.deliver(b"Subject: one\r\n\r\nbody\r\n", folder="Shared")
    watcher, changer = raw(mailserver, user), raw(mailserver, user)
    assert watcher.cmd(b"SELECT Shared").startswith(b"t1 OK")
    assert changer.cmd(change).startswith(b"t1 OK")
    watcher.send(b"n1 NOOP\r\n")
    assert watcher.until_tag(b"n1") == [b"* BYE The selected mailbox was deleted or renamed; please log in again",
                                        b"n1 NO The selected mailbox no longer exists"]
    with pytest.raises(ConnectionError):
        watcher.line()
    assert changer.cmd(b"NOOP").startswith(b"t1 OK")
    watcher.close()
    changer.close()


def test_rename_inbox_moves_its_messages_and_leaves_it_empty(mailserver, user):
    md = maildir(mailserver.root, user.split("@")[0])
    md.deliver(b"Subject: first\r\n\r\nbody\r\n")
    md.deliver(b"Subject: second\r\n\r\nbody\r\n")
    r = raw(mailserver, user)
    assert r.cmd(b"SELECT INBOX").startswith(b"t1 OK")
    assert r.cmd(b"STORE 1 +FLAGS (\\Flagged)").startswith(b"t1 OK")
    r.send(b"r1 RENAME INBOX Saved\r\n")
    lines = r.until_tag(b"r1")
    assert lines == [b"* 2 EXPUNGE", b"* 1 EXPUNGE", b"r1 OK RENAME completed"]
    r.send(b"s1 STATUS INBOX (MESSAGES)\r\n")
    assert r.until_tag(b"s1")[0] == b"* STATUS INBOX (MESSAGES 0)"
    assert r.cmd(b"SELECT Saved").startswith(b"t1 OK")
    r.send(b"f1 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    text = b"\n".join(r.until_tag(b"f1"))
    assert b"Subject: first" in text and b"Subject: second" in text and text.count(b"\\Flagged") == 1
    md.deliver(b"Subject: later\r\n\r\nbody\r\n")       # INBOX still takes mail
    r.send(b"s2 STATUS INBOX (MESSAGES)\r\n")
    assert r.until_tag(b"s2")[0] == b"* STATUS INBOX (MESSAGES 1)"
    assert r.cmd(b"RENAME INBOX Saved").startswith(b"t1 NO [ALREADYEXISTS]")
    r.close()
