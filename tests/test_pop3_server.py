"""POP3 through poplib: every command, STLS and implicit TLS, the maildrop lock,
deletion only at QUIT, and a dropped connection leaving the mailbox unchanged."""
from __future__ import annotations

import base64
import poplib
import socket

import pytest

from helpers_mail import PASSWORD, box, client_tls, mailserver, message, user  # noqa: F401 - pytest fixtures, used as test arguments


def pop(srv, address=None, port_name="pop3"):
    if port_name == "pop3s":
        p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=client_tls(), timeout=20)
    else:
        p = poplib.POP3("127.0.0.1", srv.port(port_name), timeout=20)
    if address:
        p.user(address)
        p.pass_(PASSWORD)
    return p


def fill(srv, address, n=3):
    md = box(srv, address)
    for i in range(n):
        md.deliver(message(f"msg {i}", body=f"line one\n.dotted line\nline three {i}"))
    return md


def test_capa_login_stat_list_uidl_retr_top(mailserver, user):
    md = fill(mailserver, user)
    p = pop(mailserver)
    caps = p.capa()
    for cap in ("TOP", "UIDL", "USER", "STLS", "SASL", "RESP-CODES"):
        assert cap in caps
    with pytest.raises(poplib.error_proto, match="AUTH"):
        p.user(user)
        p.pass_("wrong")
    p.user(user)
    assert p.pass_(PASSWORD).startswith(b"+OK 3")
    count, size = p.stat()
    msgs = md.folder("INBOX").sync()
    assert count == 3 and size == sum(m.vsize for m in msgs)
    assert p.list()[1] == [f"{i} {m.vsize}".encode() for i, m in enumerate(msgs, 1)]
    uidl = p.uidl()[1]
    assert len(set(u.split()[1] for u in uidl)) == 3
    assert p.uidl(2).split()[1] == b"2"
    resp, lines, octets = p.retr(1)
    assert b"..dotted line" not in b"\r\n".join(lines) and b".dotted line" in lines
    assert b"Subject: msg 0" in lines
    resp, lines, _ = p.top(2, 1)
    assert lines[-1] == b"line one" and b"Subject: msg 1" in lines
    assert p.noop().startswith(b"+OK")
    with pytest.raises(poplib.error_proto):
        p.retr(9)
    with pytest.raises(poplib.error_proto):
        p._shortcmd("FOO")
    p.quit()


def test_uidl_stable_across_sessions_and_restarts(mailserver, user):
    fill(mailserver, user, 2)
    p = pop(mailserver, user)
    first = p.uidl()[1]
    p.quit()
    box(mailserver, user).folder("INBOX").set_flags(box(mailserver, user).folder("INBOX").sync()[0], {"\\Seen"})
    p = pop(mailserver, user)
    assert p.uidl()[1] == first   # a flag change (rename) keeps the UIDL
    p.quit()


def test_dele_rset_and_delete_only_at_quit(mailserver, user):
    md = fill(mailserver, user, 3)
    p = pop(mailserver, user)
    p.dele(1)
    with pytest.raises(poplib.error_proto, match="deleted"):
        p.retr(1)
    assert p.stat()[0] == 2
    assert len(md.folder("INBOX").sync()) == 3   # nothing removed yet
    p.rset()
    assert p.stat()[0] == 3
    p.dele(2)
    p.dele(3)
    p.quit()
    left = md.folder("INBOX").sync()
    assert len(left) == 1 and b"msg 0" in md.folder("INBOX").read(left[0])


def test_dropped_connection_deletes_nothing(mailserver, user):
    md = fill(mailserver, user, 2)
    p = pop(mailserver, user)
    p.dele(1)
    p.dele(2)
    p.sock.shutdown(socket.SHUT_RDWR)   # dropped: no QUIT
    p.sock.close()
    p2 = None
    for _ in range(50):   # the server notices the drop and frees the lock
        try:
            p2 = pop(mailserver, user)
            break
        except poplib.error_proto:
            import time
            time.sleep(0.1)
    assert p2 is not None and p2.stat()[0] == 2
    p2.quit()
    assert len(md.folder("INBOX").sync()) == 2


def test_one_session_per_mailbox(mailserver, user):
    fill(mailserver, user, 1)
    p = pop(mailserver, user)
    q = pop(mailserver)
    q.user(user)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        q.pass_(PASSWORD)
    p.quit()
    q.user(user)
    assert q.pass_(PASSWORD).startswith(b"+OK")
    q.quit()


def test_auth_plain_stls_and_pop3s(mailserver, user):
    fill(mailserver, user, 1)
    p = pop(mailserver)
    p.stls(context=client_tls())
    assert "STLS" not in p.capa()
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    assert p._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
    assert p.stat()[0] == 1
    p.quit()
    p = pop(mailserver, port_name="pop3s")
    p._shortcmd("AUTH PLAIN")  # continuation "+ "
    assert p._shortcmd(token).startswith(b"+OK")
    p.quit()


def test_hostile_pop3_input(mailserver, user):
    fill(mailserver, user, 1)
    s = socket.create_connection(("127.0.0.1", mailserver.port("pop3")), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    for line in (b"STAT", b"RETR 1", b"DELE 1", b"PASS x", b"X" * 100_000, b"AUTH PLAIN !!!",
                 b"AUTH PLAIN " + base64.b64encode(b"other\0" + user.encode() + b"\0" + PASSWORD.encode())):
        s.sendall(line + b"\r\n")
        reply = f.readline()
        assert reply.startswith(b"-ERR"), (line[:20], reply)
    s.sendall(f"USER {user}\r\nPASS {PASSWORD}\r\n".encode())
    assert f.readline().startswith(b"+OK") and f.readline().startswith(b"+OK")
    for line in (b"RETR 0", b"RETR -1", b"RETR 99999999999999", b"TOP 1", b"TOP 1 x", b"LIST abc", b"USER again"):
        s.sendall(line + b"\r\n")
        assert f.readline().startswith(b"-ERR"), line
    s.sendall(b"QUIT\r\n")
    assert f.readline().startswith(b"+OK")
    s.close()


def test_retr_of_cached_evicted_and_moved_messages(mailserver, user):
    """RETR reads a message in the event loop only when the kernel holds all of it; one
    evicted from the page cache, or renamed by an IMAP client since login, is read in a
    worker thread. Each way gives the same bytes and the same size as LIST."""
    import os
    md = box(mailserver, user)
    bodies = [message(f"r{i}", body=".dot line\n" * (150 * (i + 1))) for i in range(3)]
    for data in bodies:
        md.deliver(data)
    p = pop(mailserver, user)
    listed = [int(line.split()[1]) for line in p.list()[1]]
    inbox = md.folder("INBOX")
    msgs = inbox.sync()
    fd = os.open(msgs[1].path, os.O_RDONLY)       # evict message 2 from the page cache
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    inbox.set_flags(msgs[2], {"\\Seen"})           # message 3 renamed by an IMAP client
    for n, data in enumerate(bodies, 1):
        resp, lines, octets = p.retr(n)
        assert resp == b"+OK %d octets" % listed[n - 1]
        assert b"\r\n".join(lines) + b"\r\n" == data.replace(b"\n", b"\r\n")
    p.quit()
