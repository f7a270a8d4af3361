"""CREATE-SPECIAL-USE and METADATA state shared across sessions, serving processes and
a restart, and hostile input to LIST's options and to METADATA (RFC 5258, 6154, 5464).
The scripted replies for each RFC's examples are in tests/conformance/ (listext_*,
liststatus_*, specialuse_*, statussize_*, metadata_*)."""
from __future__ import annotations

import imaplib
import json
import re

from helpers_mail import box, mailserver, user  # noqa: F401 - pytest fixtures, used as test arguments
from helpers_raw import Raw
from helpers_server import imap_sessions_in_two_processes, make_root, serve_process, wait_for_processes

ALICE, PW = "alice@example.com", "secret-pass-1"


def _untagged(client, typ: str) -> list:
    return [d for d in client.untagged_responses.pop(typ, []) if d]


def _cmd(client, *words: str):
    # imaplib knows no METADATA commands; it refuses a name missing from its table
    for name in ("GETMETADATA", "SETMETADATA"):
        imaplib.Commands.setdefault(name, ("AUTH", "SELECTED"))
    typ, data = client._simple_command(*words)
    return typ, data


def test_create_use_and_metadata_seen_by_the_other_process_and_after_restart(tmp_path):
    root = make_root(tmp_path, accounts={ALICE: PW},
                     settings={"server.processes": 2, "auth.allow_plaintext": True, "queue.offline": True})
    from engine.maildir import Maildir
    md = Maildir.for_account(root, "example.com", "alice")
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        a, b = imap_sessions_in_two_processes(root, proc.ports["imap"], ALICE, PW)
        b.list('""', "*")                         # b's process keeps a listing of the tree
        assert _cmd(a, "CREATE", "Old-Mail", "(USE (\\Archive))")[0] == "OK"
        assert _cmd(a, "SETMETADATA", "Old-Mail", '(/private/comment "kept")')[0] == "OK"
        assert _cmd(a, "SETMETADATA", '""', '(/shared/vendor/x/theme "dark")')[0] == "OK"
        typ, data = b.list('""', "Old-Mail")
        assert typ == "OK" and data == [b'(\\HasNoChildren \\Archive) "/" Old-Mail'], data
        typ, _ = _cmd(b, "GETMETADATA", "Old-Mail", "/private/comment")
        assert typ == "OK" and b"kept" in repr(_untagged(b, "METADATA")).encode()
        for c in (a, b):
            c.logout()
    # what a restart (and Dovecot-style tools) find on disk: our two files, no path tricks
    assert "Old-Mail" in (md.path / "mailctl-specialuse").read_text()
    assert json.loads((md.folder("Old-Mail").path / "mailctl-metadata").read_text()) == {"/private/comment": "kept"}
    assert json.loads((md.path / "mailctl-server-metadata").read_text()) == {"/shared/vendor/x/theme": "dark"}
    with serve_process(root) as proc:
        c = imaplib.IMAP4("127.0.0.1", proc.ports["imap"], timeout=20)
        c.login(ALICE, PW)
        assert c.list('""', "Old-Mail")[1] == [b'(\\HasNoChildren \\Archive) "/" Old-Mail']
        assert _cmd(c, "GETMETADATA", '""', "/shared/vendor/x/theme")[0] == "OK"
        assert b"dark" in repr(_untagged(c, "METADATA")).encode()
        # a rename takes the use and the annotations along; a delete takes them away
        assert c.rename("Old-Mail", "Older")[0] == "OK"
        assert c.list('""', "Older")[1] == [b'(\\HasNoChildren \\Archive) "/" Older']
        _cmd(c, "GETMETADATA", "Older", "/private/comment")
        assert b"kept" in repr(_untagged(c, "METADATA")).encode()
        assert c.delete("Older")[0] == "OK"
        assert c.create("Older")[0] == "OK"
        assert c.list('""', "Older")[1] == [b'(\\HasNoChildren) "/" Older']
        c.logout()


def _raw(srv, address: str) -> Raw:
    r = Raw(srv.port("imap"))
    r.login(address)
    return r


def _no_path(lines: list[bytes], srv) -> None:
    text = b"\n".join(lines)
    assert str(srv.root.path).encode() not in text and b"Traceback" not in text, text


def test_metadata_limits_and_hostile_entry_names(mailserver, user):
    r = _raw(mailserver, user)
    seen = []
    big = b"x" * (64 * 1024 + 1)
    r.send(b"a SETMETADATA INBOX (/private/big {%d+}\r\n" % len(big) + big + b")\r\n")
    seen += r.until_tag(b"a")
    assert seen[-1].startswith(b"a NO [METADATA MAXSIZE 65536]"), seen[-1]
    huge = b"x" * (2 * 1024 * 1024)
    r.send(b"b SETMETADATA INBOX (/private/huge {%d}\r\n" % len(huge))
    answer = r.line()
    if answer.startswith(b"+"):
        r.send(huge + b")\r\n")
        answer = r.until_tag(b"b")[-1]
    assert answer.startswith((b"b NO", b"b BAD")), answer
    for tag, name in ((b"c", b"/private/../../etc/passwd"), (b"d", b"/private/a\x00b"),
                      (b"e", b"/shared/./x"), (b"f", b"/private/a/"), (b"g", b"private/a"),
                      (b"h", b"/" * 3000)):
        r.send(tag + b" SETMETADATA INBOX ({%d+}\r\n" % len(name) + name + b' "v")\r\n')
        seen += r.until_tag(tag)
        assert seen[-1].startswith(tag + b" BAD"), (name, seen[-1])
    # TOOMANY: the 65th entry of a mailbox is refused, every one before it kept
    pairs = " ".join(f'/private/n{i} "v{i}"' for i in range(64))
    assert r.cmd(f"SETMETADATA INBOX ({pairs})".encode(), b"i").startswith(b"i OK")
    assert r.cmd(b'SETMETADATA INBOX (/private/one-more "v")', b"j").startswith(b"j NO [METADATA TOOMANY]")
    assert r.cmd(b'SETMETADATA INBOX (/private/n3 "changed")', b"k").startswith(b"k OK")
    # a value with a NUL comes back whole, as a literal8 (RFC 5464 §5)
    value = b"a\x00b\xff"
    r.send(b"l SETMETADATA \"\" (/private/bin ~{%d+}\r\n" % len(value) + value + b")\r\n")
    assert r.until_tag(b"l")[-1].startswith(b"l OK")
    r.send(b'm GETMETADATA "" /private/bin\r\n')
    assert r.until_tag(b"m") == [b'* METADATA "" (/private/bin ~{4}', value + b")", b"m OK GETMETADATA completed"]
    assert r.cmd(b"NOOP", b"n").startswith(b"n OK")
    _no_path(seen, mailserver)
    r.close()


def test_list_hostile_options_keep_the_session(mailserver, user):
    r = _raw(mailserver, user)
    seen = []
    for tag, cmd in ((b"a", b'LIST ((SUBSCRIBED)) "" %'), (b"b", b'LIST (SUBSCRIBED "" %'),
                     (b"c", b'LIST "" % RETURN (STATUS (MESSAGES) STATUS (UNSEEN))'),
                     (b"d", b'LIST "" (' + b" ".join(b"p%d" % i for i in range(101)) + b")"),
                     (b"e", b'LIST "" ()'), (b"f", b'LIST (' + b"SUBSCRIBED " * 5000 + b'BOGUS) "" %'),
                     (b"g", b'LIST "" % RETURN (STATUS (MESSAGES HIGHESTMODSEQX))'),
                     (b"h", b'CREATE x (USE (\\Archive) USE (\\Junk))')):
        r.send(tag + b" " + cmd + b"\r\n")
        seen += r.until_tag(tag)
        assert seen[-1].startswith(tag + b" BAD"), (cmd[:60], seen[-1])
    assert r.cmd(b'LIST "" INBOX', b"z").startswith(b"z OK")
    _no_path(seen, mailserver)
    r.close()


def test_subscribed_name_that_does_not_exist_is_nonexistent_and_has_no_status(mailserver, user):
    md = box(mailserver, user)
    md.subscribe("Gone/Away")                   # as another tool (or Dovecot) leaves it
    r = _raw(mailserver, user)
    r.send(b'a LIST (SUBSCRIBED) "" "Gone*" RETURN (STATUS (MESSAGES))\r\n')
    lines = r.until_tag(b"a")
    assert lines == [b'* LIST (\\Subscribed \\NonExistent) "/" Gone/Away', b"a OK LIST completed"], lines
    r.send(b'b LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"\r\n')
    lines = r.until_tag(b"b")
    assert b'* LIST (\\NonExistent) "/" Gone ("CHILDINFO" ("SUBSCRIBED"))' in lines, lines
    # a plain LIST neither lists it nor says \Subscribed of anything
    r.send(b'c LIST "" "*"\r\n')
    lines = r.until_tag(b"c")
    assert not any(b"Gone" in x or b"Subscribed" in x for x in lines), lines
    assert not any(re.search(rb"\\NonExistent", x) for x in lines)
    r.close()
