"""Hostile input to the IMAP server: each gets BAD or NO with a reason, and the
server (and the same connection where possible) keeps serving."""
from __future__ import annotations


from helpers_mail import PASSWORD, box, imap, mailserver, message, user  # noqa: F401 - pytest fixtures, used as test arguments
from helpers_raw import Raw


def still_serves(srv, address) -> None:
    c = imap(srv, address)
    assert c.noop()[0] == "OK"
    c.logout()


def test_commands_before_login_and_unknown_commands(mailserver, user):
    r = Raw(mailserver.port("imap"))
    for cmd in (b"SELECT INBOX", b"LIST \"\" *", b"FETCH 1 FLAGS", b"APPEND INBOX {3}", b"IDLE"):
        reply = r.cmd(cmd)
        assert reply.startswith(b"t1 BAD") and b"log in first" in reply
    assert r.cmd(b"FROBNICATE").startswith(b"t1 BAD Unknown command")
    assert r.cmd(b"").startswith(b"* BAD") or True
    r.login(user)
    assert r.cmd(b"FETCH 1 FLAGS").startswith(b"t1 BAD") 
    r.close()


def test_huge_literal_is_refused_without_reading_it(mailserver, user):
    r = Raw(mailserver.port("imap"))
    r.login(user)
    reply = r.cmd(b"APPEND INBOX {2147483648}")
    assert reply.startswith(b"t1 NO [TOOBIG]")
    assert r.cmd(b"NOOP", b"t2").startswith(b"t2 OK")
    reply = r.cmd(b"LOGIN {2147483648}")
    assert reply.startswith(b"t1 BAD") or reply.startswith(b"t1 NO")
    assert r.cmd(b"NOOP", b"t3").startswith(b"t3 OK")
    # a small refused non-synchronising literal is skipped and the connection stays usable
    pre = Raw(mailserver.port("imap"))   # before login, only LOGIN may carry literals
    pre.send(b"t5 SELECT {5+}\r\nINBOX {3+}\r\nxyz\r\n")
    assert pre.until_tag(b"t5")[-1].startswith(b"t5 BAD")
    assert pre.cmd(b"NOOP", b"t6").startswith(b"t6 OK")
    pre.close()
    # a non-synchronising literal that large cannot be skipped: answer, then hang up
    r.send(b"t4 APPEND INBOX {2147483648+}\r\nxxxx")
    lines = [r.line(), r.line()]
    assert lines[0].startswith(b"t4 NO [TOOBIG]") and lines[1].startswith(b"* BYE")
    r.close()
    still_serves(mailserver, user)


def test_deep_nesting_long_lines_and_bad_sequence_sets(mailserver, user):
    box(mailserver, user).deliver(message("m"))
    r = Raw(mailserver.port("imap"))
    r.login(user)
    assert r.cmd(b"SELECT INBOX").startswith(b"t1 OK")
    reply = r.cmd(b"FETCH 1 " + b"(" * 10000 + b"FLAGS" + b")" * 10000)
    assert reply.startswith(b"t1 BAD") and b"nested" in reply
    reply = r.cmd(b"SEARCH " + b"(" * 10000 + b"ALL" + b")" * 10000)
    assert reply.startswith(b"t1 BAD")
    for bad_set in (b"0", b"1:", b"a:b", b"1,,2", b"-1", b"99999999999", b"5", b"1:*:2", b"*x"):
        reply = r.cmd(b"FETCH " + bad_set + b" FLAGS")
        assert reply.startswith(b"t1 BAD"), (bad_set, reply)
    assert r.cmd(b"UID FETCH 1:99999 FLAGS").startswith(b"t1 OK")   # UID ranges past the end are fine
    reply = r.cmd(b"NOOP " + b"x" * (1024 * 1024))
    assert reply.startswith(b"t1 BAD") and b"too long" in reply
    assert r.cmd(b'FETCH 1 (BODY[1.2.3.4.5.TEXT.FOO])').startswith(b"t1 BAD")
    assert r.cmd(b'FETCH 1 (BODY[HEADER.FIELDS ()])').startswith(b"t1 BAD")
    assert r.cmd(b'STORE 1 +FLAGS (\\Recent-ish)').startswith(b"t1 BAD")
    assert r.cmd(b'SEARCH BEFORE 32-Foo-2020').startswith(b"t1 BAD")
    assert r.cmd(b'SEARCH OR SEEN').startswith(b"t1 BAD")
    assert r.cmd(b'"unterminated').startswith(b"* BAD") or True
    assert r.cmd(b"NOOP", b"t9").startswith(b"t9 OK")
    r.close()
    still_serves(mailserver, user)


def test_bad_folder_names(mailserver, user):
    r = Raw(mailserver.port("imap"))
    r.login(user)
    md = box(mailserver, user)
    before = sorted(p.name for p in md.path.parent.iterdir())
    for name in (b'"../evil"', b'"a/../../evil"', b'"&Jjo"', b'"&AGE-"', b'"&-&-x&"',
                 b'"/abs"', b'"a//b"', b'"..."', b'{3}\r\na\x00b'):
        if name.startswith(b"{"):
            r.send(b"t1 CREATE {3}\r\n")
            assert r.line().startswith(b"+")
            r.send(b"a\x00b\r\n")
            reply = r.until_tag(b"t1")[-1]
        else:
            reply = r.cmd(b"CREATE " + name)
        assert reply.startswith(b"t1 NO") or reply.startswith(b"t1 BAD"), (name, reply)
    for verb in (b"SELECT", b"DELETE", b"STATUS", b"RENAME INBOX"):
        tail = b" (MESSAGES)" if verb == b"STATUS" else b""
        reply = r.cmd(verb + b' "../alice"' + tail)
        assert reply.startswith(b"t1 NO") or reply.startswith(b"t1 BAD"), (verb, reply)
    assert sorted(p.name for p in md.path.parent.iterdir()) == before
    assert not (md.path.parent.parent / "evil").exists()
    assert r.cmd(b"NOOP").startswith(b"t1 OK")
    r.close()


def test_bad_login_attempts_and_literal_in_auth(mailserver, user):
    r = Raw(mailserver.port("imap"))
    assert r.cmd(b"LOGIN onlyone").startswith(b"t1 BAD")
    assert r.cmd(b"AUTHENTICATE PLAIN !!notbase64").startswith(b"t1 BAD")
    assert r.cmd(b"AUTHENTICATE CRAM-MD5").startswith(b"t1 NO")
    assert r.cmd(b'LOGIN nobody@example.com "x"').startswith(b"t1 NO [AUTHENTICATIONFAILED]")
    assert r.cmd(b'LOGIN "\xff\xfe" "x"').startswith(b"t1 BAD") or True
    r.login(user)
    assert r.cmd(b'LOGIN x y').startswith(b"t1 BAD")
    r.close()


def test_logindisabled_without_tls_and_bans(tmp_path):
    from helpers_mail import add_users, configure, new_root, running
    root = new_root(tmp_path / "r")
    add_users(root, ["a"])
    configure(root, {"auth.allow_plaintext": False, "auth.ban_after_failures": 2})
    with running(root, ("imap",)) as srv:
        r = Raw(srv.port("imap"))
        assert b"LOGINDISABLED" in r.greeting and b"STARTTLS" in r.greeting
        assert r.cmd(b'LOGIN a@example.com "x"').startswith(b"t1 NO [PRIVACYREQUIRED]")
        r.close()
        configure(root, {"auth.allow_plaintext": True})
        srv.reload()
        r = Raw(srv.port("imap"))
        for _ in range(2):
            assert r.cmd(b'LOGIN a@example.com "wrong"').startswith(b"t1 NO")
        r.close()
        r = Raw(srv.port("imap"))
        assert r.greeting.startswith(b"* BYE") and b"banned" in r.greeting
        srv.runtime.bans.remove("127.0.0.1")
        r = Raw(srv.port("imap"))
        r.login("a@example.com")
        r.close()


def test_session_limits(tmp_path):
    from helpers_mail import add_users, configure, new_root, running
    root = new_root(tmp_path / "r")
    add_users(root, ["a"])
    configure(root, {"mailbox.max_sessions_per_user": 1, "mailbox.max_sessions": 3})
    with running(root, ("imap", "pop3")) as srv:
        first = Raw(srv.port("imap"))
        first.login("a@example.com")
        second = Raw(srv.port("imap"))
        assert second.cmd(f'LOGIN a@example.com "{PASSWORD}"'.encode()).startswith(b"t1 NO [LIMIT]")
        third = Raw(srv.port("pop3"))
        assert third.greeting.startswith(b"+OK")
        fourth = Raw(srv.port("imap"))
        assert fourth.greeting.startswith(b"* BYE") and b"Too many" in fourth.greeting
        for r in (first, second, third, fourth):
            r.close()


def test_list_extended_forms(mailserver, user):
    r = Raw(mailserver.port("imap"))
    r.login(user)
    r.send(b'l1 LIST (SPECIAL-USE) "" "*"\r\n')
    lines = r.until_tag(b"l1")
    assert lines[-1].startswith(b"l1 OK") and any(b"\\Sent" in x for x in lines)
    r.send(b'l2 LIST "" "*" RETURN (SPECIAL-USE CHILDREN)\r\n')
    assert r.until_tag(b"l2")[-1].startswith(b"l2 OK")
    r.send(b'l3 LIST (SUBSCRIBED) "" "*"\r\n')
    lines = r.until_tag(b"l3")
    assert lines[-1].startswith(b"l3 OK") and all(b"\\Subscribed" in x for x in lines[:-1])
    r.close()


def test_plaintext_pipelined_after_starttls_is_discarded(mailserver, user):
    from helpers_mail import client_tls
    r = Raw(mailserver.port("imap"))
    r.send(b"s1 STARTTLS\r\ns2 LOGOUT\r\n")   # injected command in the same packet
    assert r.line().startswith(b"s1 OK")
    tls = client_tls().wrap_socket(r.sock, server_hostname="mail.example.com")
    tls.sendall(b"s3 NOOP\r\n")
    data = b""
    while b"s3 " not in data:
        chunk = tls.recv(4096)
        assert chunk, data
        data += chunk
    assert b"s2" not in data and b"s3 OK" in data
    tls.close()
