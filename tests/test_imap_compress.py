"""COMPRESS=DEFLATE (RFC 4978): after the OK both directions are raw DEFLATE with a sync
flush per response batch; over plain TCP, implicit TLS and STARTTLS; a second COMPRESS is
NO [COMPRESSIONACTIVE]; a broken or hostile compressed stream ends that session only.
The clients: a raw one doing zlib itself (helpers_raw.Raw.compress) and mbsync."""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import zlib

import pytest

from helpers_mail import PASSWORD, box, client_tls, imap, mailserver, message, user  # noqa: F401 - fixtures
from helpers_raw import Raw

BODY = b"Subject: compressed\r\n\r\n" + b"line of text that repeats\r\n" * 2000


def tls_raw(srv, port_name: str) -> Raw:
    """A Raw client over TLS: implicit (imaps) or after STARTTLS (imap)."""
    r = Raw.__new__(Raw)
    r.buf, r.deflate, r.wire_in, r.wire_out = b"", None, 0, 0
    sock = socket.create_connection(("127.0.0.1", srv.port(port_name)), timeout=10)
    if port_name == "imaps":
        r.sock = client_tls().wrap_socket(sock)
        r.greeting = r.line()
    else:
        r.sock = sock
        r.greeting = r.line()
        assert r.cmd(b"STARTTLS", b"s").startswith(b"s OK")
        r.sock = client_tls().wrap_socket(sock)
    return r


def exercise(r: Raw, address: str) -> None:
    """Commands of every kind through the compressed stream, checked."""
    assert r.compress().startswith(b"z OK")
    assert r.cmd(b"NOOP", b"a").startswith(b"a OK")
    reply = r.cmd(b"APPEND INBOX {%d+}\r\n" % len(BODY) + BODY, b"b")
    assert reply.startswith(b"b OK [APPENDUID"), reply
    big = b"Subject: big\r\n\r\n" + b"x" * 400_000 + b"\r\n"        # spooled as it arrives
    assert r.cmd(b"APPEND INBOX {%d+}\r\n" % len(big) + big, b"c").startswith(b"c OK")
    assert r.cmd(b"SELECT INBOX", b"d").startswith(b"d OK")
    r.send(b"e FETCH 1:2 (RFC822.SIZE BODY.PEEK[])\r\n")
    data = b""
    while not re.search(rb"\r\ne OK [^\r\n]*\r\n", data):
        data += r.buf + r.recv()
        r.buf = b""
    assert BODY in data and big in data
    assert r.cmd(b"COMPRESS DEFLATE", b"f").startswith(b"f NO [COMPRESSIONACTIVE]")
    r.send(b"g IDLE\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"DONE\r\n")
    assert r.until_tag(b"g")[-1].startswith(b"g OK")
    r.send(b"h LOGOUT\r\n")
    assert r.until_tag(b"h")[-1].startswith(b"h OK")


def test_compressed_session_over_plain_tcp(mailserver, user):
    r = Raw(mailserver.port("imap"))
    r.login(user)
    exercise(r, user)
    # the 54 KB text went in and came back compressed
    assert r.wire_out < len(BODY) // 10 + 420_000 and r.wire_in < 2 * 420_000
    r.close()


@pytest.mark.parametrize("port_name", ["imaps", "imap"])
def test_compressed_session_over_tls(mailserver, user, port_name):
    r = tls_raw(mailserver, port_name)
    r.login(user)
    exercise(r, user)
    r.close()


def test_refusals(mailserver, user):
    r = Raw(mailserver.port("imap"))
    assert r.cmd(b"COMPRESS DEFLATE", b"a").startswith(b"a BAD")       # before login
    r.login(user)
    assert r.cmd(b"COMPRESS GZIP", b"b").startswith(b"b BAD")
    assert r.cmd(b"COMPRESS", b"c").startswith(b"c BAD")
    assert r.cmd(b"COMPRESS DEFLATE DEFLATE", b"d").startswith(b"d BAD")
    assert r.cmd(b"NOOP", b"e").startswith(b"e OK")                     # still uncompressed
    r.close()


def _server_still_serves(srv, address: str) -> None:
    c = imap(srv, address)
    assert c.noop()[0] == "OK"
    c.logout()


def _closed_soon(r: Raw, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    r.sock.settimeout(seconds)
    try:
        while time.monotonic() < deadline:
            if not r.sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except OSError:             # reset by the server
        return True
    return False


@pytest.mark.parametrize("garbage", [b"\xff" * 64, b"not deflate at all\r\n",
                                     zlib.compress(b"a NOOP\r\n"),          # zlib header: not raw DEFLATE
                                     b"\x03\x00" + b"after the final block"])
def test_a_broken_stream_ends_the_session_and_the_server_goes_on(mailserver, user, garbage):
    r = Raw(mailserver.port("imap"))
    r.login(user)
    assert r.compress().startswith(b"z OK")
    r.sock.sendall(garbage)
    assert _closed_soon(r)
    _server_still_serves(mailserver, user)


def test_a_decompression_bomb_ends_the_session(mailserver, user):
    """Gigabytes of one endless line from a few hundred kilobytes: the session reads no
    more than the line limit at a time and ends once the ratio is beyond any mail."""
    r = Raw(mailserver.port("imap"))
    r.login(user)
    assert r.compress().startswith(b"z OK")
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = z.compress(b"A" * (16 * 1024 * 1024)) + z.flush(zlib.Z_SYNC_FLUSH)
    started = time.monotonic()
    try:
        for _ in range(64):                 # 1 GB inflated, about 1 MB sent
            r.sock.sendall(chunk)
    except OSError:
        pass                                # the server hung up first
    assert _closed_soon(r)
    assert time.monotonic() - started < 20
    _server_still_serves(mailserver, user)


def test_uncompressed_and_compressed_sessions_side_by_side(mailserver, user):
    plain, packed = Raw(mailserver.port("imap")), Raw(mailserver.port("imap"))
    for r in (plain, packed):
        r.login(user)
    assert packed.compress().startswith(b"z OK")
    for i in range(20):
        for r in (plain, packed):
            assert r.cmd(b"APPEND INBOX {%d+}\r\n" % len(BODY) + BODY, b"x%d" % i).startswith(b"x%d OK" % i)
    assert packed.cmd(b"STATUS INBOX (MESSAGES)", b"s") .startswith(b"s OK")
    plain.close()
    packed.close()


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_mbsync_syncs_over_a_compressed_session(mailserver, user, tmp_path):
    md = box(mailserver, user)
    for i in range(5):
        md.deliver(message(f"mbsync {i}", body="compress me " * 500))
    local = tmp_path / "local"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount test
Host 127.0.0.1
Port {mailserver.port('imap')}
User {user}
Pass {PASSWORD}
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account test

MaildirStore local
Path {local}/
Inbox {local}/INBOX

Channel sync
Far :remote:
Near :local:
Patterns INBOX
Create Near
SyncState *
""")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(["mbsync", "-D", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "COMPRESS DEFLATE" in r.stdout + r.stderr         # mbsync asked for it, and went on
    assert len(list((local / "INBOX").glob("*/*"))) == 5
    for p in (local / "INBOX").glob("*/*"):
        assert b"compress me compress me" in p.read_bytes()
