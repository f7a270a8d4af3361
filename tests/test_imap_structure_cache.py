"""BODYSTRUCTURE and BODY are kept per serving process once made (engine/imap/structures.py):
a second FETCH of them reads no file, answers exactly as the first, and BODY stays the
non-extended form."""
from __future__ import annotations

from helpers_mail import maildir
from test_imap_preview import Client, server  # noqa: F401  (the fixture: a server on a new root)
from test_imap_preview import client as logged_in

MIXED = (b"Subject: mixed\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\n"
         b"--b1\nContent-Type: text/plain; charset=utf-8\n\nhello\n"
         b"--b1\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: multipart/alternative; boundary=b2\n\n"
         b"--b2\nContent-Type: text/plain\n\ninner plain\n--b2\nContent-Type: text/html\n\n<p>inner</p>\n--b2--\n"
         b"--b1\nContent-Type: application/pdf; name=a.pdf\nContent-Disposition: attachment; filename=a.pdf\n"
         b"Content-Transfer-Encoding: base64\n\nJVBERi0=\n--b1--\n")
PLAIN = b"Subject: plain\n\njust text\n"


def client(srv) -> Client:
    c = logged_in(srv)
    assert b"t1 OK" in c.answer(b"EXAMINE INBOX")
    return c


def fetched(c: Client, command: bytes) -> list[bytes]:
    """The FETCH lines (message data) of the answer, without the tagged reply."""
    return [line for line in c.answer(command).split(b"\r\n") if line.startswith(b"* ")]


def payload(line: bytes, name: bytes) -> bytes:
    """What follows 'NAME ' in a one-item FETCH line, up to the line's closing paren."""
    return line.split(b"(" + name + b" ", 1)[1][:-1]


def test_a_second_session_gets_the_same_bytes_and_body_stays_non_extended(server):
    root, srv = server
    box = maildir(root)
    for m in (MIXED, PLAIN, MIXED.replace(b"a.pdf", b"b.pdf")):
        box.deliver(m)
    first = fetched(client(srv), b"FETCH 1:3 (BODYSTRUCTURE)")
    body_first = fetched(client(srv), b"FETCH 1:3 (BODY)")
    again = client(srv)
    assert fetched(again, b"FETCH 1:3 (BODYSTRUCTURE)") == first
    assert fetched(again, b"FETCH 1:3 (BODY)") == body_first
    both = fetched(again, b"FETCH 1:3 (BODY BODYSTRUCTURE)")
    for line, body, structure in zip(both, body_first, first):
        assert payload(body, b"BODY") in line and payload(structure, b"BODYSTRUCTURE") in line
    assert b'"attachment" ("filename" "a.pdf")' in first[0] and b"attachment" not in body_first[0]
    assert b'"attachment" ("filename" "b.pdf")' in first[2]      # by message, not by shape


def test_a_structure_once_made_is_not_read_again(server):
    """Seen by changing the file behind the server's back, which no Maildir writer does:
    the kept answer comes back; an item that needs the file reads the file as it is now."""
    root, srv = server
    box = maildir(root)
    box.deliver(MIXED)
    c = client(srv)
    [before] = fetched(c, b"FETCH 1 (BODYSTRUCTURE BODY)")
    assert b'"MIXED"' in before
    (msg,) = box.folder("INBOX").sync()
    msg.path.write_bytes(PLAIN)
    assert fetched(c, b"FETCH 1 (BODYSTRUCTURE BODY)") == [before]
    [body] = fetched(c, b"FETCH 1 (BODY)")
    assert body.startswith(b"* 1 FETCH (BODY (") and b'"MIXED"' in body and body[17:-1] in before
    mixed_answer = c.answer(b"FETCH 1 (BODYSTRUCTURE BODY.PEEK[TEXT])")
    assert b'"MIXED"' in mixed_answer and b"just text" in mixed_answer
    c.close()
