"""FETCH BODY[section] inside message/rfc822 parts (RFC 3501 §6.4.5): a forwarded
multipart, a doubly nested message and a message enclosing a message, each section
number and its MIME/HEADER/TEXT, checked against the RFC rules, against BODYSTRUCTURE,
and against Dovecot on the same tree."""
from __future__ import annotations

import imaplib
import re

import pytest

import dovecot
from helpers_mail import PASSWORD, add_users, imap, maildir, new_root, running

USER = "alice@example.com"

INNER = b"""From: Inner <inner@example.org>
Subject: inner multipart
Content-Type: multipart/mixed; boundary="out1"

--out1
Content-Type: text/plain; charset=us-ascii

first inner part
--out1
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=us-ascii

alt plain
--alt
Content-Type: text/html; charset=us-ascii

<p>alt html</p>
--alt--

--out1--

"""
# The outer boundary "out" is a prefix of the forwarded message's "out1", as happens
# with generated boundaries: only a whole delimiter line ends a part.
FORWARDED = b"""From: Fwd <fwd@example.org>
Subject: Fwd: inner multipart
Content-Type: multipart/mixed; boundary="out"

--out
Content-Type: message/rfc822
Content-Description: forwarded

""" + INNER + b"""--out
Content-Type: text/plain; charset=us-ascii

outer text
--out--
"""
DOUBLE = b"""From: Twice <twice@example.org>
Subject: Fwd: Fwd
Content-Type: multipart/mixed; boundary="d0"

--d0
Content-Type: text/plain; charset=us-ascii

cover note
--d0
Content-Type: message/rfc822

From: Mid <mid@example.org>
Subject: mid
Content-Type: multipart/mixed; boundary="d1"

--d1
Content-Type: text/plain; charset=us-ascii

mid text
--d1
Content-Type: message/rfc822

From: Deep <deep@example.org>
Subject: deep
Content-Type: multipart/mixed; boundary="d2"

--d2
Content-Type: text/plain; charset=us-ascii

deep one
--d2
Content-Type: text/plain; charset=us-ascii

deep two
--d2--

--d1--

--d0--
"""
MSG_IN_MSG = b"""From: G <g@example.org>
Subject: message in message
Content-Type: message/rfc822

From: Mid <mid@example.org>
Subject: mid
Content-Type: message/rfc822

From: Deep <deep@example.org>
Subject: deep
Content-Type: text/plain; charset=us-ascii

deep body
"""


def crlf(text: bytes) -> bytes:
    return text.replace(b"\n", b"\r\n")


def header_of(message: bytes) -> bytes:
    return crlf(message.split(b"\n\n", 1)[0] + b"\n\n")


def new_tree(path):
    root = new_root(path)
    add_users(root, ["alice"])
    md = maildir(root)
    for message in (FORWARDED, DOUBLE, MSG_IN_MSG):
        md.deliver(message)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = new_tree(tmp_path_factory.mktemp("sections") / "r")
    with running(root, ("imap",)) as srv:
        yield root, srv


def fetch_one(c, seq: int, item: str) -> bytes:
    typ, data = c.fetch(str(seq), f"({item})")
    assert typ == "OK", data
    return data[0][1] if isinstance(data[0], tuple) else b""


@pytest.fixture()
def client(server):
    c = imap(server[1], USER)
    c.select("INBOX", readonly=True)
    yield c
    c.logout()


FORWARDED_SECTIONS = {
    "1": crlf(INNER)[:-2],                     # the CRLF before "--out" belongs to the delimiter
    "1.MIME": b"Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n",
    "1.HEADER": header_of(INNER),
    "1.1": b"first inner part",
    "1.1.MIME": b"Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    "1.1.HEADER": b"",                         # not a message/rfc822 part
    "1.1.TEXT": b"",
    "1.1.1": b"first inner part",              # a leaf named once more is itself (as Dovecot)
    "1.1.1.1": b"",                            # ... but has nothing inside
    "1.2": crlf(INNER.split(b'boundary="alt"\n\n', 1)[1].split(b"\n\n--out1--", 1)[0] + b"\n"),
    "1.2.MIME": b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n',
    "1.2.1": b"alt plain",
    "1.2.2": b"<p>alt html</p>",
    "1.2.2.MIME": b"Content-Type: text/html; charset=us-ascii\r\n\r\n",
    "1.3": b"",
    "2": b"outer text",
    "2.1": b"outer text",
    "2.1.1": b"",
    "3": b"",
}


def test_forwarded_multipart_sections(client):
    text = crlf(INNER.split(b"\n\n", 1)[1])[:-2]
    assert fetch_one(client, 1, "BODY.PEEK[1.TEXT]") == text
    for section, want in FORWARDED_SECTIONS.items():
        assert fetch_one(client, 1, f"BODY.PEEK[{section}]") == want, section


DOUBLE_SECTIONS = {
    "1": b"cover note",
    "1.1.1": b"",
    "2.HEADER": b'From: Mid <mid@example.org>\r\nSubject: mid\r\nContent-Type: multipart/mixed; boundary="d1"\r\n\r\n',
    "2.1": b"mid text",
    "2.2.MIME": b"Content-Type: message/rfc822\r\n\r\n",
    "2.2.HEADER": b'From: Deep <deep@example.org>\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary="d2"\r\n\r\n',
    "2.2.1": b"deep one",
    "2.2.1.MIME": b"Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    "2.2.2": b"deep two",
    "2.2.3": b"",
    "2.2.TEXT": b"--d2\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\ndeep one\r\n--d2\r\n"
                b"Content-Type: text/plain; charset=us-ascii\r\n\r\ndeep two\r\n--d2--\r\n",
    "3": b"",
}


def test_doubly_nested_sections(client):
    for section, want in DOUBLE_SECTIONS.items():
        assert fetch_one(client, 2, f"BODY.PEEK[{section}]") == want, section


def test_message_enclosing_a_message(client):
    deep = b"From: Deep <deep@example.org>\r\nSubject: deep\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\ndeep body\r\n"
    mid_header = b"From: Mid <mid@example.org>\r\nSubject: mid\r\nContent-Type: message/rfc822\r\n\r\n"
    want = {"1": mid_header + deep, "1.HEADER": mid_header,
            "1.1": deep,                      # the body of the non-multipart enclosed message
            "1.1.MIME": mid_header,           # its MIME header is that message's header
            "1.1.HEADER": deep.split(b"\r\n\r\n")[0] + b"\r\n\r\n",
            "1.1.TEXT": b"deep body\r\n", "1.1.1": b"deep body\r\n", "1.2": b"", "2": b""}
    for section, expected in want.items():
        assert fetch_one(client, 3, f"BODY.PEEK[{section}]") == expected, section


def test_plain_message_has_only_part_one(server, tmp_path):
    root, srv = server
    c = imap(srv, USER)
    c.append("INBOX", None, None, b"Subject: plain\r\n\r\nplain body\r\n")
    c.select("INBOX", readonly=True)
    typ, data = c.search(None, "SUBJECT", "plain")
    seq = int(data[0].split()[-1])
    assert fetch_one(c, seq, "BODY.PEEK[1]") == b"plain body\r\n"
    assert fetch_one(c, seq, "BODY.PEEK[1.1]") == b""
    assert fetch_one(c, seq, "BODY.PEEK[2]") == b""
    c.logout()


def test_bodystructure_agrees_with_the_sections(client):
    """Every size BODYSTRUCTURE gives is the size of the bytes BODY[part] returns."""
    typ, data = client.fetch("1", "(BODYSTRUCTURE)")
    structure = data[0].decode()
    # the forwarded part: MESSAGE/RFC822 of 1's size, enclosing a MIXED of TEXT and ALTERNATIVE
    m = re.search(r'\("MESSAGE" "RFC822" NIL NIL "forwarded" "7BIT" (\d+) ', structure)
    assert m and int(m.group(1)) == len(FORWARDED_SECTIONS["1"])
    sizes = [int(x) for x in re.findall(r'"TEXT" "(?:PLAIN|HTML)" \("charset" "us-ascii"\) NIL NIL "7BIT" (\d+)', structure)]
    assert sizes == [len(FORWARDED_SECTIONS[s]) for s in ("1.1", "1.2.1", "1.2.2", "2")]
    assert '"ALTERNATIVE" ("boundary" "alt")' in structure and '"MIXED" ("boundary" "out1")' in structure


SECTIONS = ["1", "1.MIME", "1.HEADER", "1.TEXT", "1.1", "1.1.MIME", "1.1.HEADER", "1.1.TEXT", "1.1.1",
            "1.1.1.1", "1.2", "1.2.MIME", "1.2.1", "1.2.2", "1.3", "2", "2.MIME", "2.HEADER", "2.TEXT",
            "2.1", "2.1.MIME", "2.1.1", "2.2", "2.2.MIME", "2.2.HEADER", "2.2.TEXT", "2.2.1",
            "2.2.1.MIME", "2.2.2", "2.2.1.1", "3", "1.1.HEADER.FIELDS (SUBJECT)", "2.2.HEADER.FIELDS.NOT (FROM)"]


@pytest.mark.skipif(not dovecot.available(), reason="Dovecot is not installed")
def test_sections_match_dovecot(tmp_path):
    root = new_tree(tmp_path / "r")
    items = [f"BODY.PEEK[{s}]" for s in SECTIONS] + ["BODYSTRUCTURE", "BINARY.PEEK[1.1]", "BINARY.SIZE[2.2.1]"]

    def collect(c):
        c.select("INBOX", readonly=True)
        return {item: c.fetch("1:3", f"({item})") for item in items}
    with running(root, ("imap",)) as srv:     # stopped before Dovecot works on the tree
        c = imap(srv, USER)
        ours = collect(c)
        c.logout()
    with dovecot.dovecot_server(root.path, {USER: PASSWORD}) as dc:
        d = imaplib.IMAP4(dc.host, dc.imap_port, timeout=20)
        d.login(USER, PASSWORD)
        try:
            theirs = collect(d)
        except imaplib.IMAP4.error as e:
            raise AssertionError(dc.log_text()) from e
        d.logout()
    for item in items:   # the same data; only the case of MIME type words differs
        assert repr(ours[item]).upper() == repr(theirs[item]).upper(), (item, ours[item], theirs[item])
