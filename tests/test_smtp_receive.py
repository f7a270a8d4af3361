"""SMTP receive on a real in-process server: delivery, submission, relay policy,
smuggling, recipient checks. Clients: smtplib, raw sockets, swaks."""
from __future__ import annotations

import os
import re
import smtplib
import socket
import subprocess

import pytest

from engine import directory_edit, settings as settings_mod
from engine.maildir import Maildir
from engine.queue import Queue
from helpers_server import make_root, running_server, tls_context

PW = "alice-password-1"
BOBPW = "bob-password-12"
DOMAIN = "example.com"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("smtp"), domains=("example.com", "catchall.test", "bücher.example"),
                     accounts={"alice@example.com": PW, "bob@example.com": BOBPW,
                               "carol@example.com": "carol-password", "dave@example.com": "dave-password",
                               "eve@bücher.example": "eve-password1"},
                     settings={"queue.offline": True, "limits.max_recipients": 5,
                               "limits.max_message_size_mb": 1, "limits.max_invalid_commands": 50,
                               "relay.allowed_senders": {"alice@example.com": ["sales-team@partner.org"]}})
    cfg = settings_mod.load(root.config_file)
    directory_edit.add_alias(root, cfg, "sales@example.com", ["alice@example.com", "bob@example.com"])
    directory_edit.add_list(root, cfg, "team@example.com", "public", members=["alice@example.com", "bob@example.com"])
    directory_edit.add_list(root, cfg, "staff@example.com", "members", members=["alice@example.com"])
    directory_edit.set_domain(root, cfg, "catchall.test", catch_all="alice@example.com")
    directory_edit.set_forward(root, cfg, "dave@example.com", ["dave@elsewhere.org"], True)
    directory_edit.set_account(root, cfg, "carol@example.com", enabled=False)
    directory_edit.set_account(root, cfg, "bob@example.com", quota_mb=1)
    with running_server(root) as server:
        yield server


def inbox(root, address: str) -> list[bytes]:
    local, domain = address.split("@")
    box = Maildir.for_account(root, domain, local)
    out = []
    for sub in ("new", "cur"):
        d = box.path / sub
        if d.is_dir():
            out += [(arrival(n), (d / n).read_bytes()) for n in os.listdir(d)]
    return [data for _, data in sorted(out)]


def arrival(name: str) -> tuple:
    """Delivery order from a Maildir name '<secs>.M<usecs>P<pid>Q<n>...' (fields not zero-padded)."""
    import re
    m = re.match(r"(\d+)\.M(\d+)P\d+Q(\d+)", name)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else (0, 0, 0)


def queued(root) -> list:
    return Queue(root).all()


def smtp(srv, name="smtp") -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", srv.ports[name], timeout=20)
    s.ehlo("client.test")
    return s


def msg(subject: str, sender="someone@foreign.org", body="hello\r\n") -> bytes:
    return f"From: {sender}\r\nTo: x\r\nSubject: {subject}\r\n\r\n{body}".encode()


def test_ehlo_advertises_extensions(srv):
    with smtp(srv) as s:
        for ext in ("pipelining", "enhancedstatuscodes", "8bitmime", "smtputf8", "starttls"):
            assert s.has_extn(ext), ext
        assert s.esmtp_features["size"] == str(1024 * 1024)
        assert not s.has_extn("auth")          # port 25 never offers AUTH
    with smtp(srv, "submission") as s:
        assert not s.has_extn("auth")          # not before STARTTLS
        s.starttls(context=tls_context())
        s.ehlo("client.test")
        assert "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], context=tls_context(), timeout=20) as s:
        s.ehlo("client.test")
        assert "PLAIN" in s.esmtp_features["auth"]


def test_port25_delivers_to_user_alias_list_catchall_forward(srv):
    root = srv.root
    before_alice, before_bob = len(inbox(root, "alice@example.com")), len(inbox(root, "bob@example.com"))
    with smtp(srv) as s:
        assert s.sendmail("x@foreign.org", ["alice@example.com"], msg("direct")) == {}
        assert s.sendmail("x@foreign.org", ["sales@example.com"], msg("alias")) == {}
        assert s.sendmail("x@foreign.org", ["team@example.com"], msg("list")) == {}
        assert s.sendmail("x@foreign.org", ["anything@catchall.test"], msg("catchall")) == {}
        assert s.sendmail("x@foreign.org", ["dave@example.com"], msg("forward")) == {}
        assert s.sendmail("", ["alice@example.com"], msg("bounce")) == {}          # null sender
    alice = inbox(root, "alice@example.com")[before_alice:]
    subjects = [m.split(b"Subject: ")[1].split(b"\n")[0] for m in alice]
    assert subjects == [b"direct", b"alias", b"list", b"catchall", b"bounce"]
    assert alice[0].startswith(b"Return-Path: <x@foreign.org>\nDelivered-To: alice@example.com\nReceived: from client.test")
    assert b"Return-Path: <>" in alice[-1]
    assert len(inbox(root, "bob@example.com")) == before_bob + 2
    assert len(inbox(root, "dave@example.com")) == 1              # forward keeps a copy
    ext = [e for e in queued(root) if any(r.address == "dave@elsewhere.org" for r in e.recipients)]
    # forwarded to another domain: an SRS sender of ours (srs.enabled, tests/test_srs_forwarding.py)
    assert len(ext) == 1 and re.fullmatch(r"SRS0=.{4}=..=foreign\.org=x@example\.com", ext[0].sender), ext
    assert b"Subject: forward" in Queue(root).body_path(ext[0].id).read_bytes()


def test_reply_texts_for_recipients(srv):
    with smtp(srv) as s:
        s.mail("x@foreign.org")
        assert s.rcpt("nobody@example.com") == (550, b"5.1.1 Unknown User")
        assert s.rcpt("carol@example.com") == (550, b"5.2.1 Account Is Not Active")
        assert s.rcpt("user@foreign.org") == (550, b"5.7.1 Delivery Is Not Allowed To This Address")
        assert s.rcpt("not an address")[0] == 501
        assert s.rcpt("staff@example.com") == (550, b"5.7.1 Not authorized")
        assert s.rcpt("Postmaster")[0] in (250, 550)       # RFC 5321: accepted when it exists
        s.rset()
        s.mail("x@foreign.org")
        for i in range(5):
            assert s.rcpt(["alice@example.com", "bob@example.com", "sales@example.com", "team@example.com",
                           "dave@example.com"][i])[0] == 250
        assert s.rcpt("alice@catchall.test") == (452, b"4.5.3 Too Many Recipients")
        s.rset()


def test_size_limit(srv):
    big = msg("big", body="x" * 1000 + "\r\n") * 0 + b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 1100
    with smtp(srv) as s:
        with pytest.raises(smtplib.SMTPSenderRefused) as e:     # SIZE declared in MAIL FROM
            s.sendmail("x@foreign.org", ["alice@example.com"], big, mail_options=["SIZE=%d" % len(big)])
        assert e.value.smtp_code == 552
        s.rset()
        # not declared: read to the end, then refused, and the session goes on
        s.mail("x@foreign.org")
        s.rcpt("alice@example.com")
        code, text = s.data(big)
        assert code == 552 and text.startswith(b"5.3.4")
        assert s.noop()[0] == 250


def test_quota_full(srv):
    box = Maildir.for_account(srv.root, "example.com", "bob")
    filler = box.deliver(b"Subject: filler\n\n" + b"z" * (1024 * 1024 + 10), check_quota=False)
    with smtp(srv) as s:
        s.mail("x@foreign.org")
        assert s.rcpt("bob@example.com") == (452, b"4.2.2 Mailbox Full")
        s.rset()
    os.unlink(filler.path)           # bob has room again for the tests after this one
    box.resync()


def test_submission_starttls_auth_plain_and_login(srv):
    for mech in ("PLAIN", "LOGIN"):
        with smtp(srv, "submission") as s:
            s.starttls(context=tls_context())
            s.ehlo("client.test")
            s.user, s.password = "alice@example.com", PW
            assert s.auth(mech, getattr(s, "auth_" + mech.lower()))[0] == 235
            assert s.sendmail("alice@example.com", ["friend@remote.example"],
                              msg(f"relay {mech}", sender="alice@example.com")) == {}
    relayed = [e for e in queued(srv.root) if e.auth_user == "alice@example.com"]
    assert len(relayed) >= 2
    body = Queue(srv.root).body_path(relayed[-1].id).read_bytes()
    assert b"with ESMTPSA" in body and b"Authenticated sender: alice@example.com" in body and b"using TLS" in body


def test_implicit_tls_465(srv):
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], context=tls_context(), timeout=20) as s:
        s.login("alice@example.com", PW)
        assert s.sendmail("alice@example.com", ["eve@xn--bcher-kva.example", "x@remote.example"],
                          msg("465", sender="alice@example.com")) == {}


def test_auth_before_starttls_refused_and_unauthenticated_submission(srv):
    with smtp(srv, "submission") as s:
        code, _ = s.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHBhc3N3b3Jk")
        assert code == 538
        code, text = s.docmd("MAIL", "FROM:<alice@example.com>")
        assert code == 530 and text.startswith(b"5.7.0")
    with smtp(srv) as s:                       # and no AUTH at all on port 25
        assert s.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHBhc3N3b3Jk")[0] == 502


def test_auth_names_only_real_mechanisms(srv):
    """The adapter's auth_require_tls (a property) is no AUTH mechanism: naming it is an
    unknown mechanism, not an internal error that closes the connection."""
    with smtp(srv, "submission") as s:
        s.starttls(context=tls_context())
        s.ehlo("client.test")
        code, text = s.docmd("AUTH", "require_tls")
        assert (code, text[:5]) == (504, b"5.5.4"), (code, text)
        assert s.noop()[0] == 250
        s.user, s.password = "alice@example.com", PW
        assert s.auth("PLAIN", s.auth_plain)[0] == 235


def test_wrong_password_535(srv):
    with smtp(srv, "submission") as s:
        s.starttls(context=tls_context())
        s.ehlo("client.test")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("alice@example.com", "wrong-password")
        assert e.value.smtp_code == 535
    srv.runtime.bans.remove("127.0.0.1") if srv.runtime.bans.is_banned("127.0.0.1") else None


def test_plaintext_pipelined_with_starttls_is_discarded(srv):
    raw = socket.create_connection(("127.0.0.1", srv.ports["submission"]), timeout=10)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220")
    raw.sendall(b"EHLO x.test\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    raw.sendall(b"STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n")
    assert f.readline().startswith(b"220")
    tls = tls_context().wrap_socket(raw, server_hostname="localhost")
    tls.sendall(b"MAIL FROM:<second@example.com>\r\n")
    reply = tls.recv(1000)
    # an executed injected MAIL would make this a nested-MAIL 503; a fresh session wants EHLO first
    assert reply.startswith(b"503 5.5.1 Use HELO/EHLO First") or reply.startswith(b"530")
    tls.close()


def test_pipelined_commands_get_every_reply_in_order(srv):
    """RFC 2920: a pipelined group is answered completely and in order, whether or not
    the next command is already there; no reply waits for more input."""
    raw = socket.create_connection(("127.0.0.1", srv.ports["smtp"]), timeout=10)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220")
    raw.sendall(b"EHLO x.test\r\nMAIL FROM:<p@foreign.org>\r\nRCPT TO:<nobody@example.com>\r\n"
                b"RCPT TO:<alice@example.com>\r\nDATA\r\n")
    replies = []
    while len(replies) < 5:
        line = f.readline()
        assert line, replies
        if line[3:4] == b" ":
            replies.append(line[:3])
    assert replies == [b"250", b"250", b"550", b"250", b"354"]
    raw.sendall(b"Subject: piped\r\n\r\nbody\r\n.\r\nRSET\r\nMAIL FROM:<p@foreign.org>\r\n")
    assert [f.readline()[:3] for _ in range(3)] == [b"250", b"250", b"250"]   # the last one alone
    raw.sendall(b"NOOP\r\nQUIT\r\n")
    assert [f.readline()[:3] for _ in range(2)] == [b"250", b"221"]
    raw.close()
    assert any(b"Subject: piped" in m for m in inbox(srv.root, "alice@example.com"))


@pytest.mark.parametrize("rcpt", [
    "user@foreign.org", "user%foreign.org@example.com", '"user@foreign.org"@example.com',
    "foreign.org!user@example.com", "@example.com:user@foreign.org", "user@[127.0.0.1]",
    "user@example.com.", "user@foreign.org@example.com",
])
def test_no_relay_without_auth(srv, rcpt):
    with smtp(srv) as s:
        s.mail("x@foreign.org")
        code, _ = s.rcpt(rcpt)
        assert 500 <= code < 600, rcpt
        s.rset()
    with smtp(srv, "submission") as s:          # submission without AUTH: not even MAIL
        s.starttls(context=tls_context())
        s.ehlo("client.test")
        assert s.docmd("MAIL", "FROM:<x@foreign.org>")[0] == 530
    assert not [e for e in queued(srv.root) if any("foreign.org" in r.address and "user" in r.address
                                                    for r in e.recipients)]


def test_case_and_idn_forms_of_local_domain_stay_local(srv):
    with smtp(srv) as s:
        assert s.sendmail("x@foreign.org", ["ALICE@EXAMPLE.COM"], msg("upper")) == {}
        s.ehlo("client.test")
        code, _ = s.docmd("MAIL", "FROM:<x@foreign.org> SMTPUTF8")
        assert code == 250
        s.send("RCPT TO:<eve@bücher.example>\r\n".encode())
        assert s.getreply()[0] == 250
        assert s.docmd("DATA")[0] == 354
        s.send(b"Subject: idn\r\n\r\nhi\r\n.\r\n")
        assert s.getreply()[0] == 250
    assert inbox(srv.root, "alice@example.com")[-1].count(b"Subject: upper") == 1
    assert b"Subject: idn" in inbox(srv.root, "eve@xn--bcher-kva.example")[-1]


def test_sender_must_be_owned_after_auth(srv):
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], context=tls_context(), timeout=20) as s:
        s.login("alice@example.com", PW)
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.sendmail("bob@example.com", ["x@remote.example"], msg("spoof", sender="bob@example.com"))
        assert e.value.smtp_code == 550 and e.value.smtp_error.startswith(b"5.7.1")
        s.rset()
        # an alias that includes alice, and an allowed sender, are fine
        assert s.sendmail("sales@example.com", ["x@remote.example"], msg("alias", sender="sales@example.com")) == {}
        assert s.sendmail("sales-team@partner.org", ["x@remote.example"],
                          msg("allowed", sender="sales-team@partner.org")) == {}
        # envelope fine, header From forged
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("alice@example.com", ["x@remote.example"], msg("forged", sender="ceo@example.com"))
        assert e.value.smtp_code == 550


SMUGGLING = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r"]


@pytest.mark.parametrize("seq", SMUGGLING, ids=["LF.LF", "CRLF.LF", "LF.CRLF", "CR.CR"])
def test_smuggling_rejected_session_in_sync(srv, seq):
    before = len(inbox(srv.root, "alice@example.com"))
    raw = socket.create_connection(("127.0.0.1", srv.ports["smtp"]), timeout=10)
    f = raw.makefile("rb")

    def reply():
        lines = [f.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(f.readline())
        return lines[-1]

    assert reply().startswith(b"220")
    raw.sendall(b"EHLO x.test\r\n")
    reply()
    raw.sendall(b"MAIL FROM:<x@foreign.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
    assert reply().startswith(b"250") and reply().startswith(b"250") and reply().startswith(b"354")
    raw.sendall(b"Subject: outer\r\n\r\nbody" + seq + b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<bob@example.com>\r\n"
                b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
    r = reply()
    assert r.startswith(b"554 5.6.0"), r
    # the smuggled commands were message text, not commands: the session is clean
    raw.sendall(b"NOOP\r\n")
    assert reply().startswith(b"250")
    raw.sendall(b"MAIL FROM:<x@foreign.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
    assert reply().startswith(b"250") and reply().startswith(b"250") and reply().startswith(b"354")
    raw.sendall(b"Subject: after\r\n\r\nok\r\n.\r\nQUIT\r\n")
    assert reply().startswith(b"250 2.0.0 Ok: queued as")
    raw.close()
    new = inbox(srv.root, "alice@example.com")[before:]
    assert len(new) == 1 and b"Subject: after" in new[0] and b"smuggled" not in new[0]


def test_dot_stuffing_and_8bit(srv):
    body = ".leading dot\r\n.\r\n..two\r\nGrüße\r\n"        # smtplib stuffs the dots
    with smtp(srv) as s:
        s.mail("x@foreign.org", ["BODY=8BITMIME"])
        s.rcpt("alice@example.com")
        assert s.data(("Subject: dots\r\n\r\n" + body).encode())[0] == 250
    last = inbox(srv.root, "alice@example.com")[-1]
    assert b"\n.leading dot\n.\n..two\n" in last and "Grüße".encode() in last


def test_random_binary_input_answered_without_crash(srv):
    import random
    rnd = random.Random(7)
    for _ in range(3):
        raw = socket.create_connection(("127.0.0.1", srv.ports["smtp"]), timeout=10)
        raw.recv(1000)
        junk = bytes(rnd.getrandbits(8) for _ in range(20000))
        try:
            raw.sendall(junk + b"\r\n" + b"A" * 3000 + b"\r\n\x00\xff\r\n")
            raw.settimeout(3)
            data = raw.recv(65536)
            assert data[:1] in (b"4", b"5")
        except (ConnectionResetError, BrokenPipeError):
            pass
        raw.close()
    with smtp(srv) as s:
        assert s.sendmail("x@foreign.org", ["alice@example.com"], msg("still alive")) == {}


def test_swaks_delivery_and_submission(srv, tmp_path):
    out = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(srv.ports["smtp"]),
                          "--to", "alice@example.com", "--from", "swaks@foreign.org", "--helo", "swaks.test",
                          "--header", "Subject: via swaks"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "250 2.0.0 Ok: queued as" in out.stdout
    out = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(srv.ports["submission"]), "-tls",
                          "--auth", "LOGIN", "--auth-user", "alice@example.com", "--auth-password", PW,
                          "--to", "someone@remote.example", "--from", "alice@example.com",
                          "--header", "From: alice@example.com"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert PW not in (srv.root.log_dir / "mailctl.log").read_text() if (srv.root.log_dir / "mailctl.log").exists() else True


def test_delivery_failure_451_and_no_copy_anywhere(srv):
    """bob's Maildir cannot take a file: the alias delivery to alice and bob fails as a
    whole with 451 4.3.0, and alice's copy never becomes visible."""
    import shutil
    bob_tmp = srv.root.mail_dir / "example.com" / "bob" / "tmp"
    shutil.rmtree(bob_tmp)
    bob_tmp.write_text("not a directory")
    before = len(inbox(srv.root, "alice@example.com"))
    alice_tmp = srv.root.mail_dir / "example.com" / "alice" / "tmp"
    tmp_before = set(os.listdir(alice_tmp))
    try:
        with smtp(srv) as s:
            s.mail("x@foreign.org")
            assert s.rcpt("sales@example.com")[0] == 250
            code, text = s.data(msg("must not appear"))
            assert code == 451 and text.startswith(b"4.3.0"), text
            assert s.sendmail("x@foreign.org", ["alice@example.com"], msg("next one")) == {}
    finally:
        bob_tmp.unlink()
        bob_tmp.mkdir()
    after = inbox(srv.root, "alice@example.com")[before:]
    assert len(after) == 1 and b"next one" in after[0]
    assert set(os.listdir(alice_tmp)) == tmp_before           # the staged copy was removed
