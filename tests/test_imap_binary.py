"""BINARY (RFC 3516): APPEND of a literal8 keeps the exact bytes, FETCH BINARY[part]
decodes base64 and quoted-printable (RFC 2045 §6.7) and sends a NUL only in a literal8
~{n}; BODY[] never sends a NUL in a {n} literal; an unknown transfer encoding is
NO [UNKNOWN-CTE]. Raw sockets, so the literal forms on the wire are seen."""
from __future__ import annotations

import base64
import re

import pytest

import dovecot
from helpers_mail import PASSWORD, add_users, maildir, new_root, running
from helpers_raw import Raw

USER = "alice@example.com"
BLOB = b"a\nb\0c\rd"          # a lone LF, a NUL, a lone CR: not lines, 7 bytes
LITERAL = re.compile(rb"(~?)\{(\d+)\}$")


class Client(Raw):
    """Raw with responses read literal by literal: [(line, [(is_literal8, bytes), ...])]."""

    def response(self, tag: bytes) -> list:
        out = []
        while True:
            line = self.line()
            pieces = []
            while (m := LITERAL.search(line)) is not None:
                size = int(m.group(2))
                while len(self.buf) < size:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed")
                    self.buf += chunk
                pieces.append((m.group(1) == b"~", self.buf[:size]))
                self.buf = self.buf[size:]
                line = line + b"<lit>" + self.line()
            out.append((line, pieces))
            if line.startswith(tag + b" "):
                return out

    def fetch(self, seq: int, item: str, tag: bytes = b"f1") -> list:
        self.send(tag + b" FETCH %d (%s)\r\n" % (seq, item.encode()))
        return self.response(tag)

    def one(self, seq: int, item: str) -> tuple[bool, bytes]:
        """(sent as literal8, bytes) of the one literal a FETCH answers with."""
        lines = self.fetch(seq, item)
        assert lines[-1][0].startswith(b"f1 OK"), lines
        return lines[0][1][0]

    def append(self, message: bytes, literal8: bool = True) -> bytes:
        mark = b"~" if literal8 else b""
        self.send(b"a1 APPEND INBOX %s{%d}\r\n" % (mark, len(message)))
        assert self.line().startswith(b"+")
        self.send(message + b"\r\n")
        return self.until_tag(b"a1")[-1]


@pytest.fixture()
def server(tmp_path):
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    with running(root, ("imap",)) as srv:
        yield root, srv


def client(srv) -> Client:
    c = Client(srv.port("imap"))
    c.login(USER)
    return c


SINGLE = (b"From: a@example.org\r\nSubject: blob\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + BLOB)
MULTI = (b"From: a@example.org\r\nSubject: blobs\r\nMIME-Version: 1.0\r\n"
         b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
         b"--b\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n"
         b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
         + BLOB + b"\r\n--b--\r\n")


def test_literal8_append_comes_back_byte_exact(server):
    c = client(server[1])
    c.send(b"t1 CAPABILITY\r\n")
    assert b" BINARY" in c.until_tag(b"t1")[0]
    for message in (SINGLE, MULTI):
        assert c.append(message).startswith(b"a1 OK")
    assert c.cmd(b"SELECT INBOX").startswith(b"t1 OK")
    # the whole message and the binary part, decoded, exactly as appended (7 bytes, not 9)
    assert c.one(1, "BINARY.PEEK[]") == (True, SINGLE)
    assert c.one(1, "BINARY.PEEK[1]") == (True, BLOB)
    assert c.one(2, "BINARY.PEEK[]") == (True, MULTI)
    assert c.one(2, "BINARY.PEEK[2]") == (True, BLOB)
    assert c.one(2, "BINARY.PEEK[1]") == (False, b"see the attachment")
    lines = c.fetch(2, "BINARY.SIZE[2] BINARY.SIZE[1]")
    assert b"BINARY.SIZE[2] 7 BINARY.SIZE[1] 18" in lines[0][0]
    # BODY[] is lines: the binary part is in base64, and says so
    is8, body = c.one(2, "BODY.PEEK[]")
    assert not is8 and b"\0" not in body
    assert c.one(2, "BODY.PEEK[2.MIME]") == (
        False, b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
    assert base64.b64decode(c.one(2, "BODY.PEEK[2]")[1]) == BLOB
    size = int(re.search(rb"RFC822.SIZE (\d+)", c.fetch(2, "RFC822.SIZE")[0][0]).group(1))
    assert size == len(body)
    c.close()


def test_ordinary_literal_append_is_stored_as_lines(server):
    """A {n} literal is text: its lines are kept as lines (the usual APPEND)."""
    c = client(server[1])
    text = b"Subject: text\r\n\r\nline one\r\nline two\r\n"
    assert c.append(text, literal8=False).startswith(b"a1 OK")
    assert c.cmd(b"SELECT INBOX").startswith(b"t1 OK")
    assert c.one(1, "BODY.PEEK[]") == (False, text)
    assert c.one(1, "BINARY.PEEK[]") == (False, text)
    c.close()


def test_nul_goes_only_in_literal8(server):
    root, srv = server
    maildir(root).deliver(b"Subject: nul\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\nbefore\0after\n")
    c = client(srv)
    assert c.cmd(b"SELECT INBOX").startswith(b"t1 OK")
    # BODY: a {n} literal, the NUL sent as 0x80 (as Dovecot does), the size unchanged
    assert c.one(1, "BODY.PEEK[TEXT]") == (False, b"before\x80after\r\n")
    is8, whole = c.one(1, "BODY.PEEK[]")
    assert not is8 and b"\0" not in whole and whole.endswith(b"before\x80after\r\n")
    assert c.one(1, "RFC822.TEXT") == (False, b"before\x80after\r\n")
    # BINARY: the real bytes, in a literal8
    assert c.one(1, "BINARY.PEEK[1]") == (True, b"before\0after\r\n")
    assert c.one(1, "BINARY.PEEK[1]<3.6>") == (True, b"ore\0af")
    assert c.one(1, "BINARY.PEEK[1]<8.4>") == (False, b"fter")
    c.close()


QP_TEXT = (b"Subject: qp\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
           b"trailing spaces go   \n"
           b"tabs too\t\t\n"
           b"a soft break = \t\n"
           b"joins lines=\n"
           b" and caf=C3=A9 =3D equals, lower =c3=a9\n"
           b"a lone = stays\n")
QP_DECODED = (b"trailing spaces go\r\ntabs too\r\na soft break joins lines and caf\xc3\xa9 = equals, lower \xc3\xa9\r\n"
              b"a lone = stays\r\n")


def test_quoted_printable_per_rfc2045(server):
    root, srv = server
    maildir(root).deliver(QP_TEXT)
    c = client(srv)
    assert c.cmd(b"SELECT INBOX").startswith(b"t1 OK")
    assert c.one(1, "BINARY.PEEK[1]") == (False, QP_DECODED)
    lines = c.fetch(1, "BINARY.SIZE[1]")
    assert b"BINARY.SIZE[1] %d)" % len(QP_DECODED) in lines[0][0]
    c.close()


def test_base64_and_unknown_encoding(server):
    root, srv = server
    data = bytes(range(256)) * 3
    encoded = base64.encodebytes(data)
    maildir(root).deliver(b"Subject: parts\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=z\n\n"
                          b"--z\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: BASE64\n\n"
                          + encoded + b"--z\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\n"
                          b"begin 644 x\n--z--\n")
    c = client(srv)
    assert c.cmd(b"SELECT INBOX").startswith(b"t1 OK")
    assert c.one(1, "BINARY.PEEK[1]") == (True, data)
    assert b"BINARY.SIZE[1] 768)" in c.fetch(1, "BINARY.SIZE[1]")[0][0]
    for item in ("BINARY.PEEK[2]", "BINARY.SIZE[2]", "BINARY.PEEK[]"):
        lines = c.fetch(1, item)
        assert lines[-1][0].startswith(b"f1 NO [UNKNOWN-CTE]"), (item, lines)
    assert c.one(1, "BODY.PEEK[2]") == (False, b"begin 644 x")
    c.close()


@pytest.mark.skipif(not dovecot.available(), reason="Dovecot is not installed")
def test_binary_matches_dovecot(tmp_path):
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    md = maildir(root)
    # Dovecot refuses the lenient cases (a lone "=", lower-case hex) with NO [PARSE]
    md.deliver(QP_TEXT.replace(b", lower =c3=a9", b"").replace(b"a lone = stays\n", b""))
    md.deliver(b"Subject: nul\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\nbefore\0after\n")
    md.deliver(b"Subject: b64\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
               + base64.encodebytes(bytes(range(256))))
    items = ["BINARY.PEEK[1]", "BINARY.SIZE[1]", "BODY.PEEK[1]", "BODY.PEEK[TEXT]", "BINARY.PEEK[1]<2.5>"]

    def collect(port, log=lambda: ""):
        c = Client(port)
        assert c.cmd(f'LOGIN {USER} "{PASSWORD}"'.encode()).startswith(b"t1 OK")
        answer = c.cmd(b"EXAMINE INBOX")
        assert answer.startswith(b"t1 OK"), (answer, log())
        out = {(seq, item): c.fetch(seq, item) for seq in (1, 2, 3) for item in items}
        c.close()
        return out
    with running(root, ("imap",)) as srv:       # stopped before Dovecot works on the tree
        ours = collect(srv.port("imap"))
    with dovecot.dovecot_server(root.path, {USER: PASSWORD}) as dc:
        theirs = collect(dc.imap_port, dc.log_text)
    def data(lines):
        """The untagged lines; the literal form kept only where it matters: a NUL needs
        a literal8 (Dovecot sends every decoded BINARY as literal8, which is allowed)."""
        return [(line.replace(b"~{", b"{"), [(is8 if b"\0" in lit else None, lit) for is8, lit in pieces])
                for line, pieces in lines[:-1]]
    for key in ours:
        assert data(ours[key]) == data(theirs[key]), (key, ours[key], theirs[key])


def test_large_messages_behave_the_same(server):
    """A literal8 large enough to be spooled to disk as it arrives, and a large message
    streamed from its file for BODY[]: the same bytes as small ones."""
    root, srv = server
    blob = (BLOB * 300_000)[:2_000_000]
    big = SINGLE[:-len(BLOB)] + blob
    text = b"Subject: big nul\nContent-Type: text/plain\n\n" + (b"x" * 70 + b"\0\n") * 20_000
    maildir(root).deliver(text)
    c = client(srv)
    assert c.append(big).startswith(b"a1 OK")
    assert c.cmd(b"SELECT INBOX").startswith(b"t1 OK")
    is8, body = c.one(1, "BODY.PEEK[]")              # streamed from the file
    assert not is8 and len(body) == len(text) + 20_003 and b"\0" not in body and body.count(b"\x80") == 20_000
    assert c.one(1, "BINARY.PEEK[1]") == (True, text.split(b"\n\n", 1)[1].replace(b"\n", b"\r\n"))
    assert c.one(2, "BINARY.PEEK[1]") == (True, blob)
    assert c.one(2, "BINARY.PEEK[]") == (True, big)
    assert b"BINARY.SIZE[1] %d)" % len(blob) in c.fetch(2, "BINARY.SIZE[1]")[0][0]
    is8, body = c.one(2, "BODY.PEEK[]")
    assert not is8 and b"\0" not in body and base64.b64decode(body.split(b"\r\n\r\n", 1)[1]) == blob
    c.close()


@pytest.mark.skipif(not dovecot.available(), reason="Dovecot is not installed")
def test_literal8_appended_here_or_in_dovecot_reads_the_same_in_both(tmp_path):
    """The stored form is one both servers read: a literal8 APPENDed to either gives the
    same bytes back from BINARY in the other (one server at a time on the tree)."""
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    with running(root, ("imap",)) as srv:
        c = client(srv)
        assert c.append(MULTI).startswith(b"a1 OK")
        c.close()
    with dovecot.dovecot_server(root.path, {USER: PASSWORD}) as dc:
        d = Client(dc.imap_port)
        assert d.cmd(f'LOGIN {USER} "{PASSWORD}"'.encode()).startswith(b"t1 OK")
        assert d.append(SINGLE).startswith(b"a1 OK")
        answer = d.cmd(b"SELECT INBOX")
        assert answer.startswith(b"t1 OK"), (answer, dc.log_text())
        assert d.one(1, "BINARY.PEEK[2]") == (True, BLOB)
        assert d.one(1, "BINARY.PEEK[1]")[1] == b"see the attachment"
        d.close()
    with running(root, ("imap",)) as srv:
        c = client(srv)
        assert c.cmd(b"SELECT INBOX").startswith(b"t1 OK")
        assert c.one(2, "BINARY.PEEK[1]") == (True, BLOB)
        assert c.one(2, "BINARY.PEEK[]") == (True, SINGLE)
        c.close()
