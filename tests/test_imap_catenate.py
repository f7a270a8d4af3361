"""CATENATE (RFC 4469): messages made of TEXT literals and IMAP URLs (RFC 5092) of this
user's messages. A URL is hostile input: another user's mailbox, a path out of the
Maildir, absurd sections and malformed text are all NO [BADURL], echoed without "]" or
control bytes, and store nothing; with MULTIAPPEND, all messages or none."""
from __future__ import annotations

import re

import pytest

from helpers_mail import box, imap, mailserver, user  # noqa: F401 - pytest fixtures, used as test arguments
from helpers_raw import Raw

SOURCE = (b"From: a@example.org\r\nSubject: source\r\nContent-Type: multipart/mixed; boundary=xx\r\n\r\n"
          b"--xx\r\nContent-Type: text/plain\r\n\r\npart one\r\n--xx\r\nContent-Type: message/rfc822\r\n\r\n"
          b"Subject: inner\r\n\r\ninner body\r\n--xx--\r\n")


def lit(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


def session(srv, address: str) -> tuple[Raw, int]:
    """A logged-in raw session with SOURCE appended as UID 1; (session, uidvalidity)."""
    r = Raw(srv.port("imap"))
    r.login(address)
    reply = r.cmd(b"APPEND INBOX " + lit(SOURCE), b"s0")
    m = re.match(rb"s0 OK \[APPENDUID (\d+) 1\]", reply)
    assert m, reply
    return r, int(m.group(1))


def fetch_all(srv, address: str) -> list[bytes]:
    c = imap(srv, address)
    typ, data = c.select("INBOX")
    n = int(data[0])
    bodies = [c.fetch(str(i), "(BODY.PEEK[])")[1][0][1] for i in range(1, n + 1)]
    c.logout()
    return bodies


def test_parts_and_sections(mailserver, user):
    r, uv = session(mailserver, user)
    url = f"/INBOX;UIDVALIDITY={uv}/;UID=1".encode()
    cases = [
        (b'TEXT ' + lit(b"Subject: x\r\n\r\n") + b' URL "' + url + b'/;SECTION=1"', b"Subject: x\r\n\r\npart one"),
        (b'URL "' + url + b'/;SECTION=2.HEADER"', b"Subject: inner\r\n\r\n"),
        (b'URL "' + url + b'/;SECTION=2.TEXT"', b"inner body"),
        (b'URL "' + url + b'/;SECTION=1.MIME"', b"Content-Type: text/plain\r\n\r\n"),
        (b'URL "' + url + b'/;SECTION=1/;PARTIAL=2.3"', b"rt "),
        (b'URL "imap://' + user.replace("@", "%40").encode() + b'@localhost' + url + b'/;SECTION=1"', b"part one"),
        (b'URL "' + url + b'"', SOURCE),
    ]
    for i, (parts, _) in enumerate(cases):
        reply = r.cmd(b"APPEND INBOX CATENATE (" + parts + b")", b"c%d" % i)
        assert reply.startswith(b"c%d OK [APPENDUID %d %d]" % (i, uv, i + 2)), reply
    assert fetch_all(mailserver, user)[1:] == [want for _, want in cases]
    r.close()


HOSTILE = [
    "/INBOX/;UID=99",                               # no such message
    "/INBOX;UIDVALIDITY=1/;UID=1",                  # another UIDVALIDITY
    "/../bob/;UID=1", "/..%2Fbob/;UID=1", "/INBOX%2F..%2F..%2Fbob/;UID=1",    # out of the Maildir
    "/.%2e/;UID=1", "/%2e%2e/;UID=1", "//etc/passwd/;UID=1", "/tmp/;UID=1", "/cur/;UID=1",
    "imap://bob@example.com@localhost/INBOX/;UID=1",  # another user's mailbox
    "imap://bob%40example.com@localhost/INBOX/;UID=1",
    "imap://localhost/INBOX/;UID=1",                # anonymous
    "imap://{user};AUTH=*@localhost/INBOX/;UID=1",  # URLAUTH / AUTH forms
    "/INBOX/;UID=1/;URLAUTH=anonymous:internal:0123",
    "/INBOX/;UID=1/;SECTION=0", "/INBOX/;UID=1/;SECTION=99999999999", "/INBOX/;UID=1/;SECTION=7",
    "/INBOX/;UID=1/;SECTION=1.1.1", "/INBOX/;UID=1/;SECTION=1.HEADER", "/INBOX/;UID=1/;SECTION=MIME",
    "/INBOX/;UID=1/;SECTION=" + ".".join(["1"] * 200), "/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(To)",
    "/INBOX/;UID=0", "/INBOX/;UID=4294967296", "/INBOX/;UID=-1", "/INBOX/;UID=1x",
    "/INBOX?SUBJECT%20x", "/INBOX", "INBOX/;UID=1", "", "http://localhost/INBOX/;UID=1",
    "/INBOX/;UID=1]x", "/IN\u00e9BOX/;UID=1", "/INBOX%00/;UID=1", "/INBOX%zz/;UID=1", "/" + "a" * 3000 + "/;UID=1",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_urls_are_badurl_and_store_nothing(mailserver, user, url):
    r, uv = session(mailserver, user)
    url = url.replace("{user}", user)
    encoded = url.encode("utf-8")
    # with a good message before it in the same APPEND: that one is not stored either
    reply = r.cmd(b"APPEND INBOX " + lit(b"Subject: ok\r\n\r\nfine\r\n") + b" CATENATE (URL " + lit(encoded) + b")")
    m = re.match(rb"t1 NO \[BADURL ([^\]\r\n]*)\] ", reply)
    assert m, reply
    assert all(0x21 <= b <= 0x7E for b in m.group(1))
    assert str(mailserver.root.path).encode() not in reply and b"/mail/" not in reply
    assert len(fetch_all(mailserver, user)) == 1
    assert r.cmd(b"NOOP", b"t2").startswith(b"t2 OK")
    r.close()


def test_another_users_mailbox_is_never_read(mailserver, user):
    other = user.replace("user", "other")
    from helpers_mail import add_users
    add_users(mailserver.root, [other.split("@")[0]])
    mailserver.reload()
    r2, uv2 = session(mailserver, other)
    r2.close()
    r, uv = session(mailserver, user)
    for url in (f"imap://{other}@localhost/INBOX;UIDVALIDITY={uv2}/;UID=1",
                f"/../{other.split('@')[0]}/;UID=1", f"/%2E%2E%2F{other.split('@')[0]}/;UID=1"):
        reply = r.cmd(b'APPEND INBOX CATENATE (URL "' + url.encode() + b'")')
        assert reply.startswith(b"t1 NO [BADURL "), reply
    assert len(fetch_all(mailserver, user)) == 1
    r.close()


def test_relative_url_needs_a_selected_mailbox(mailserver, user):
    r, uv = session(mailserver, user)
    assert r.cmd(b'APPEND INBOX CATENATE (URL ";UID=1")').startswith(b"t1 NO [BADURL ;UID=1]")
    assert r.cmd(b"SELECT INBOX", b"t2").startswith(b"t2 OK")
    assert r.cmd(b'APPEND INBOX CATENATE (URL ";UID=1/;SECTION=1")', b"t3").startswith(b"t3 OK [APPENDUID")
    r.close()


def test_toobig_against_the_append_limit(tmp_path):
    from helpers_mail import add_users, configure, fast_settings, new_root, running
    root = new_root(tmp_path / "root")
    configure(root, fast_settings(**{"mailbox.append_limit_mb": 0.01}))      # 10485 bytes
    add_users(root, ["alice"])
    with running(root, protocols=("imap",)) as srv:
        srv.root = root
        r, uv = session(srv, "alice@example.com")
        url = b'URL "/INBOX/;UID=1"'
        reply = r.cmd(b"APPEND INBOX CATENATE (" + b" ".join([url] * (10485 // len(SOURCE) + 1)) + b")")
        assert reply.startswith(b"t1 NO [TOOBIG]"), reply
        assert r.cmd(b"APPEND INBOX CATENATE (" + b" ".join([url] * 3) + b")", b"t2").startswith(b"t2 OK")
        assert len(fetch_all(srv, "alice@example.com")) == 2
        r.close()


def test_bad_syntax(mailserver, user):
    r, uv = session(mailserver, user)
    for parts, status in ((b"", b"BAD"), (b"TEXT", b"BAD"), (b'TEXT "quoted"', b"BAD"), (b"URL", b"BAD"),
                          (b"URL (x)", b"BAD"), (b"FOO " + lit(b"x"), b"BAD"), (b"TEXT " + lit(b""), b"NO")):
        reply = r.cmd(b"APPEND INBOX CATENATE (" + parts + b")", b"t2")
        assert reply.startswith(b"t2 " + status), (parts, reply)
    assert r.cmd(b"APPEND INBOX CATENATE", b"t3").startswith(b"t3 BAD")
    assert len(fetch_all(mailserver, user)) == 1
    r.close()


def test_catenate_within_multiappend(mailserver, user):
    r, uv = session(mailserver, user)
    reply = r.cmd(b"APPEND INBOX " + lit(b"Subject: plain\r\n\r\nplain\r\n")
                  + b' CATENATE (URL "/INBOX/;UID=1/;SECTION=1" TEXT ' + lit(b"\r\n--\r\n") + b")"
                  + b' (\\Seen) "14-Jul-2023 02:44:25 -0700" CATENATE (TEXT ' + lit(b"Subject: t\r\n\r\n")
                  + b' URL "/INBOX/;UID=1/;SECTION=2.TEXT")')
    assert reply.startswith(b"t1 OK [APPENDUID %d 2:4]" % uv), reply
    assert fetch_all(mailserver, user)[1:] == [b"Subject: plain\r\n\r\nplain\r\n", b"part one\r\n--\r\n",
                                              b"Subject: t\r\n\r\ninner body"]
    c = imap(mailserver, user)
    c.select("INBOX")
    typ, data = c.fetch("4", "(FLAGS INTERNALDATE)")
    assert b"\\Seen" in data[0] and b"14-Jul-2023" in data[0], data
    c.logout()
    r.close()
