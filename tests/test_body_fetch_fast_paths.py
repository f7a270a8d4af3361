"""The fast paths of body fetching (issue 13's speed goal) answer byte for byte what the
general paths do: atoms found by regex as by the byte loop, BODY[] and RFC822 without
parsing the message as through the MIME tree, RETR in one piece as line by line
(RFC 1939 §3), files read by size hint whatever the hint, and a FETCH of many bodies,
read a batch ahead of the one being sent, in order and complete."""
from __future__ import annotations

import imaplib
import os
import poplib

from hypothesis import example, given, strategies as st

from engine.imap import fetch, mime, parser
from engine.imap.parser import ParseError
from engine.imap.response import literal
from engine.maildir import to_crlf
from engine.maildir.content import FIRST_READ, read_all
from engine.pop3.session import retr_reply
from helpers_fuzz import fuzz
from helpers_mail import PASSWORD, box, mailserver, user  # noqa: F401 - pytest fixtures, used as test arguments

# Bytes that matter to the tokenizer and to line ends, and a few ordinary ones.
_TOKEN_BYTES = st.sampled_from(list(b' ()[]{}"<>.\\\r\n\x00\x01\x7f\x80\xffAbz09*%+~') + [0x20])
_ITEM_HEADS = st.sampled_from([b"", b"BODY", b"body.peek", b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE",
                               b"BODY.PEEK", b"RFC822", b"X"])
_SECTION_PIECES = st.lists(st.sampled_from([b"[", b"]", b" ", b"(", b")", b'"', b"{", b"}", b"\r", b"\n",
                                            b"\x00", b"\x1f", b"\x7f", b"\x80", b"A", b"1.2", b"<0.1>",
                                            b"HEADER.FIELDS", b"TEXT"]), max_size=12).map(b"".join)


def _outcome(fn, data: bytes, pos: int):
    try:
        return fn(data, pos)
    except ParseError as e:
        return ("ParseError", str(e))


@fuzz(3000)
@given(st.one_of(st.tuples(_ITEM_HEADS, st.lists(_TOKEN_BYTES, max_size=40).map(bytes)),
                 st.tuples(_ITEM_HEADS, st.just(b"["), _SECTION_PIECES)).map(b"".join),
       st.integers(0, 5))
@example(b"BODY.PEEK[HEADER.FIELDS (From To)]<0.10>", 0)
@example(b"BODY[1][2]", 0)
@example(b"BODY[]]x[y", 0)
@example(b"foo[bar", 0)
@example(b"BODY[\x7f]", 0)
@example(b"BINARY[1", 0)
@example(b"body[\xff] x", 0)
@example(b'BODY[a"b]', 0)
@example(b"BODY[{3}]", 0)
@example(b"BODY[\r]", 0)
def test_atoms_by_regex_are_the_byte_loops_atoms(data, pos):
    if pos > len(data) or (pos < len(data) and data[pos] in b' ()"{\r\n'):
        pos = 0
    if not data or data[pos:pos + 1] in (b" ", b"(", b")", b'"', b"{", b"\r", b"\n"):
        return      # the tokenizer takes those bytes itself; _atom is never called at them
    assert _outcome(parser._atom, data, pos) == _outcome(parser._atom_slowly, data, pos)


def _old_render(items, data: bytes) -> bytes:
    """BODY[] and RFC822 the general way: the message parsed, its section found."""
    root = mime.Part(data, 0, len(data))
    out = []
    for item in items:
        if item.name == "RFC822":
            out.append(b"RFC822 " + literal(data))
            continue
        content = mime.section_bytes(root, item.numbers, item.text, item.fields)
        label = item.label.encode()
        if item.partial is not None:
            start, count = item.partial
            content = content[start:start + count]
            label += b"<%d>" % start
        out.append(label + b" " + literal(content))
    return b"(" + b" ".join(out) + b")"


_MESSAGE_BYTES = st.lists(st.sampled_from([b"\n", b"\r\n", b"\r", b"\0", b".", b"a", b"Subject: x",
                                           b": ", b"\n\n", b"\x80"]), max_size=60).map(b"".join)


@fuzz(1500)
@given(_MESSAGE_BYTES, st.sampled_from(["BODY[]", "BODY.PEEK[]", "RFC822", "BODY.PEEK[]<3.7>",
                                         "BODY[]<0.1>", "BODY[]<50.5>"]))
def test_whole_message_items_answer_as_the_parsed_message_does(stored, name):
    data = to_crlf(stored)
    items = fetch.parse_items(parser.Atom(name))
    assert fetch.render(None, items, data, None) == _old_render(items, data)
    assert b"".join(fetch.render_parts(None, items, data, None)) == _old_render(items, data)


def _retr_by_lines(stored: bytes) -> bytes:
    """RETR as RFC 1939 §3 words it: each line with its CRLF, a line starting with '.'
    given one more, then '.' CRLF on its own line; the size is of the CRLF message."""
    data = to_crlf(stored)
    lines = data.split(b"\r\n")
    body = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return b"+OK %d octets\r\n" % len(data) + body + b".\r\n"


@fuzz(3000)
@given(_MESSAGE_BYTES)
@example(b"")
@example(b".")
@example(b"..\n.\n")
@example(b"a\r\n.b\n.\r\n")
@example(b"x\r")
def test_retr_in_one_piece_is_retr_line_by_line(stored):
    assert retr_reply(stored) == _retr_by_lines(stored)


def test_a_file_reads_whole_whatever_the_size_hint(tmp_path):
    for size in (0, 1, 5000, FIRST_READ - 1, FIRST_READ, FIRST_READ + 1, 3 * FIRST_READ + 17):
        path = tmp_path / f"m{size}"
        content = os.urandom(size)
        path.write_bytes(content)
        for hint in (None, 0, size - 1 if size else 0, size, size + 1, size * 2, FIRST_READ):
            assert read_all(str(path), hint) == content, (size, hint)


def test_many_bodies_in_one_fetch_come_in_order_and_whole(mailserver, user):
    """Over 3 batches of FETCH_BATCH: each read ahead while the one before is sent."""
    md = box(mailserver, user)
    sent = []
    for i in range(530):
        body = (f"line {i}\n" * (i % 37)) + ("." if i % 5 == 0 else "") + f"end {i}\n"
        raw = f"From: a@example.test\nSubject: m{i}\n\n{body}".encode()
        md.deliver(raw)
        sent.append(to_crlf(raw))
    c = imaplib.IMAP4("127.0.0.1", mailserver.port("imap"))
    try:
        c.login(user, PASSWORD)
        c.select("INBOX", readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        bodies = [part[1] for part in data if isinstance(part, tuple)]
        assert bodies == sent
        typ, data = c.uid("FETCH", "3,200:205,401,530", "(UID BODY.PEEK[]<2.9>)")
        assert [part[1] for part in data if isinstance(part, tuple)] == \
            [sent[n - 1][2:11] for n in (3, 200, 201, 202, 203, 204, 205, 401, 530)]
    finally:
        c.logout()


def test_retr_over_pop3_is_the_stored_message(mailserver, user):
    md = box(mailserver, user)
    stored = [b"Subject: a\n\n.dot first\nx\n", b"Subject: b\r\n\r\nno final newline", b"Subject: c\n\n..\n.\n"]
    for raw in stored:
        md.deliver(raw)
    p = poplib.POP3("127.0.0.1", mailserver.port("pop3"), timeout=20)
    try:
        p.user(user)
        p.pass_(PASSWORD)
        for n, raw in enumerate(stored, 1):
            resp, lines, octets = p.retr(n)
            assert resp.startswith(b"+OK %d octets" % len(to_crlf(raw)))
            assert b"\r\n".join(lines) + b"\r\n" == to_crlf(raw) if to_crlf(raw).endswith(b"\r\n") \
                else b"\r\n".join(lines) == to_crlf(raw)
    finally:
        p.quit()


def _announced_by_regex_alone(line: bytes):
    m = parser.LITERAL_AT_END.search(line)
    if not m:
        return None
    digits = m.group(1)
    return (int(digits) if len(digits) <= 20 else parser.HUGE_LITERAL), m.group(2) != b"+"


@fuzz(3000)
@given(st.lists(st.sampled_from([b"a", b" ", b"{", b"}", b"~", b"+", b"1", b"22", b"\r", b"\n", b"{5}", b"{7+}"]),
                max_size=14).map(b"".join))
@example(b"A1 APPEND x {5}\r\n")
@example(b"A1 APPEND x ~{5+}\r\n\n")
@example(b"x {3}")
@example(b"x {3}\n")
def test_a_literal_is_announced_as_the_regex_alone_finds_it(line):
    assert parser.literal_announced(line) == _announced_by_regex_alone(line)
