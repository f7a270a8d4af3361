"""PREVIEW (RFC 8970) and SAVEDATE (RFC 8514) beyond the conformance scripts: hostile
messages (broken base64 and quoted-printable, bad charsets, a 10 MB line, multiparts
1000 deep, unclosed HTML) each get a short answer and the server keeps serving; a
header larger than what PREVIEW reads of a file; a message expunged under a session;
the save date of a file named by hand (NIL, and the INTERNALDATE for SEARCH) and its
stability across flag changes. Real server, raw sockets (the literals are seen)."""
from __future__ import annotations

import os
import re
import time

import pytest

from engine.imap import preview
from helpers_mail import add_users, maildir, new_root, running
from helpers_raw import Raw

USER = "alice@example.com"
PREVIEW_ITEM = re.compile(rb"PREVIEW (?:\{(\d+)\}\r\n|\"((?:[^\"\\]|\\.)*)\"|(NIL))")


@pytest.fixture()
def server(tmp_path):
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    with running(root, ("imap",)) as srv:
        yield root, srv


class Client(Raw):
    def answer(self, command: bytes, tag: bytes = b"t1") -> bytes:
        """Everything up to the tagged reply, literals included."""
        self.send(tag + b" " + command + b"\r\n")
        out = b""
        while True:
            line = self.line()
            out += line + b"\r\n"
            m = re.search(rb"\{(\d+)\}$", line)
            if m:
                size = int(m.group(1))
                while len(self.buf) < size:
                    chunk = self.sock.recv(1 << 20)
                    if not chunk:
                        raise ConnectionError("closed")
                    self.buf += chunk
                out += self.buf[:size]
                self.buf = self.buf[size:]
                continue
            if line.startswith(tag + b" "):
                return out


def previews(answer: bytes) -> list[str | None]:
    out = []
    pos = 0
    while (m := PREVIEW_ITEM.search(answer, pos)) is not None:
        if m.group(1) is not None:
            start = m.end()
            out.append(answer[start:start + int(m.group(1))].decode("utf-8"))
            pos = start + int(m.group(1))
        else:
            text = m.group(2)
            out.append(None if m.group(3) else re.sub(rb"\\(.)", rb"\1", text).decode())
            pos = m.end()
    return out


def client(srv) -> Client:
    c = Client(srv.port("imap"), timeout=60)
    c.login(USER)
    return c


def nested(depth: int) -> bytes:
    head = b"".join(b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1) for i in range(depth))
    tail = b"".join(b"--b%d--\n" % i for i in reversed(range(depth + 1)))
    return (b"Subject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n" + head
            + b"--b%d\nContent-Type: text/plain\n\ndeep text\n" % depth + tail)


HOSTILE = [
    # (message, what its preview must be: a string, or a check)
    (b"Subject: b64\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
     b"SGVsbG8g!!d29y@@bGQ\n====garbage", "Hello world"),
    (b"Subject: qp\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
     b"a=ZZb =4 c=\nd =C3=A9=", "a=ZZb =4 cd \u00e9"),
    (b"Subject: bad charset\nContent-Type: text/plain; charset=\"x-\\\"bad\"\n\ncaf\xc3\xa9 ok", "caf\u00e9 ok"),
    (b"Subject: idna\nContent-Type: text/plain; charset=idna\n\nplain \xff text", "plain \ufffd text"),
    (b"Subject: cte\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644", ""),
    (b"Subject: long line\n\n" + b"x" * (10 * 1024 * 1024) + b"\n", "x" * 256),
    (b"Subject: spaces\n\n" + b" " * (5 * 1024 * 1024) + b"\n", ""),
    (nested(1000), ""),          # its text lies past the parser's depth limit (mime.MAX_PARTS_DEPTH)
    (b"Subject: unclosed html\nContent-Type: text/html\n\nbefore<style>" + b"<a" * 300000, "before"),
    (b"Subject: lt html\nContent-Type: text/html\n\n" + b"a < b & c <br> d" + b"<" * 200000, ("a < b & c d" + "<" * 300)[:256]),
    (b"Subject: control\n\nNUL\x00 and \x1b[31m escape", "NUL and [31m escape"),
]


def test_hostile_messages_get_a_preview_each_and_the_server_keeps_serving(server):
    root, srv = server
    box = maildir(root)
    for data, _ in HOSTILE:
        box.deliver(data)
    box.deliver(b"Subject: last\n\nstill served\n")
    c = client(srv)
    assert b"t1 OK" in c.answer(b"EXAMINE INBOX")
    started = time.monotonic()
    answer = c.answer(b"FETCH 1:* (PREVIEW)")
    assert answer.endswith(b"t1 OK FETCH completed\r\n"), answer[-300:]
    assert time.monotonic() - started < 30
    got = previews(answer)
    assert len(got) == len(HOSTILE) + 1
    for (data, want), text in zip(HOSTILE, got):
        assert text is not None and len(text) <= preview.MAX_CHARS
        if callable(want):
            assert want(text), (data[:40], text)
        else:
            assert text == want, (data[:40], text)
    assert got[-1] == "still served"
    assert b"t1 OK" in c.answer(b"NOOP")
    c.close()


def test_a_header_longer_than_what_preview_reads(server):
    """FETCH (ENVELOPE PREVIEW) reads the start of each file; a header past that start is
    read whole, so the ENVELOPE sees a Subject at its end and the preview the body."""
    root, srv = server
    filler = b"".join(b"X-Filler-%d: %s\n" % (i, b"f" * 70) for i in range(preview.READ_BYTES // 80 + 50))
    maildir(root).deliver(b"From: a@example.org\n" + filler + b"Subject: at the end\n\nthe body text\n")
    c = client(srv)
    assert b"t1 OK" in c.answer(b"EXAMINE INBOX")
    answer = c.answer(b"FETCH 1 (ENVELOPE PREVIEW)")
    assert b'"at the end"' in answer
    assert previews(answer) == ["the body text"]
    c.close()


def test_a_message_expunged_meanwhile_has_nil_preview_and_savedate(server):
    root, srv = server
    box = maildir(root)
    box.deliver(b"Subject: gone\n\nsoon gone\n")
    c = client(srv)
    assert b"t1 OK" in c.answer(b"SELECT INBOX")
    folder = box.folder("INBOX")
    for msg in folder.sync():
        os.unlink(msg.path)
    answer = c.answer(b"FETCH 1 (UID PREVIEW SAVEDATE)")
    assert b"* 1 FETCH (UID 1 PREVIEW NIL SAVEDATE NIL)" in answer
    c.close()


def test_save_date_of_a_file_named_by_hand_and_after_flag_changes(server):
    root, srv = server
    box = maildir(root)
    box.deliver(b"Subject: ours\n\nours\n")
    inbox = box.folder("INBOX")
    inbox.sync()
    handmade = inbox.path / "new" / "handmade-file"
    handmade.write_bytes(b"Subject: by hand\n\nby hand\n")
    os.utime(handmade, (978350400, 978350400))            # 1-Jan-2001 12:00 UTC
    c = client(srv)
    assert b"t1 OK" in c.answer(b"SELECT INBOX")
    first = c.answer(b"FETCH 1:2 (SAVEDATE INTERNALDATE)")
    saved = re.search(rb'\* 1 FETCH \(SAVEDATE "([^"]+)"', first).group(1)
    assert b'* 2 FETCH (SAVEDATE NIL INTERNALDATE "01-Jan-2001 12:00:00 +0000")' in first
    # without a save date, the SAVED* keys compare the INTERNALDATE (RFC 8514 §4.2)
    assert b"* SEARCH 2\r\n" in c.answer(b"SEARCH SAVEDON 1-Jan-2001")
    assert b"* SEARCH 2\r\n" in c.answer(b"SEARCH SAVEDBEFORE 2-Jan-2001")
    assert b"* SEARCH 1\r\n" in c.answer(b"SEARCH SAVEDSINCE 2-Jan-2001")
    assert b"* SEARCH 1 2\r\n" in c.answer(b"SEARCH SAVEDATESUPPORTED")
    # a flag change renames the file (its ctime moves): the save date stays
    time.sleep(1.1)
    assert b"t1 OK" in c.answer(b"STORE 1 +FLAGS (\\Flagged)")
    again = c.answer(b"FETCH 1 (SAVEDATE)")
    assert b'* 1 FETCH (SAVEDATE "' + saved + b'")' in again
    c.close()


def test_a_preview_once_made_is_not_read_again(server):
    """Message files never change once delivered, so a preview is kept per process: a
    second FETCH of it reads no file (seen here by changing the file behind the server's
    back, which no Maildir writer does)."""
    root, srv = server
    box = maildir(root)
    box.deliver(b"Subject: kept\n\nfirst words\n")
    c = client(srv)
    assert b"t1 OK" in c.answer(b"EXAMINE INBOX")
    assert previews(c.answer(b"FETCH 1 (PREVIEW)")) == ["first words"]
    (msg,) = box.folder("INBOX").sync()
    msg.path.write_bytes(b"Subject: kept\n\nother words\n")
    assert previews(c.answer(b"FETCH 1 (PREVIEW)")) == ["first words"]
    assert previews(c.answer(b"FETCH 1 (PREVIEW BODY.PEEK[TEXT])")) == ["first words"]
    c.close()
