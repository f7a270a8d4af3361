"""Hostile input to POP3 and SMTP (issue 19), against a real `mailctl serve` with poplib,
smtplib and raw sockets: numbers that are digits to str.isdigit() but not to int(),
plaintext after STARTTLS/STLS, an over-long AUTH line, address literals that are no
address. Each gets a protocol reply and one log line at most, never a traceback. Last, a
fault forced inside each protocol's session: logged once with its traceback, the client
gets the protocol's goodbye, and the process goes on serving."""
from __future__ import annotations

import poplib
import smtplib
import time

import pytest

from engine.imap.commands import Commands
from engine.pop3.server import Pop3Session
from engine.smtp.server import MailSMTP
from helpers_mail import PASSWORD
from helpers_server import make_root, running_server, serve_process
from helpers_raw import Raw

ALICE = "alice@example.com"
SETTINGS = {"auth.allow_plaintext": True, "auth.failure_delay_s": 0, "auth.ban_after_failures": 0,
            "server.processes": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("hostile"), accounts={ALICE: PASSWORD}, settings=SETTINGS)
    with serve_process(root) as proc:
        proc.root = root
        yield proc


class LogWatch:
    """What the server logged since the start of a test."""

    def __init__(self, root):
        self.path = root.log_dir / "mailctl.log"
        self.start = self.path.stat().st_size if self.path.exists() else 0

    def added(self) -> str:
        time.sleep(0.3)                   # the log's writer thread
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return f.read().decode("utf-8", "replace")


@pytest.fixture(autouse=True)
def log(request):
    if "server" not in request.fixturenames:
        yield None
        return
    watch = LogWatch(request.getfixturevalue("server").root)
    yield watch
    added = watch.added()
    assert "Traceback" not in added and "internal error" not in added and " failed\n" not in added, added[-3000:]


class Line(Raw):
    """A bare socket speaking a line protocol; the greeting is read on connecting."""

    def reply(self) -> bytes:
        """A whole (multi-line) SMTP reply, as its last line."""
        line = self.line()
        while line[3:4] == b"-":
            line = self.line()
        return line

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionError:
            return True


def pop_login(server) -> poplib.POP3:
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=20)
    p.user(ALICE)
    p.pass_(PASSWORD)
    return p


# -- 5. POP3 numbers ------------------------------------------------------------------

def test_pop3_numbers_that_are_not_ascii_digits_get_err_and_the_session_goes_on(server):
    p = pop_login(server)
    for command in ("RETR \u00b2", "LIST \u00b9", "DELE \u00b3", "TOP 1 \u00b2", "TOP \u00b2 1", "UIDL \u0663",
                    "RETR " + "9" * 5000, "TOP 1 " + "9" * 300):
        with pytest.raises(poplib.error_proto, match="-ERR"):
            p._shortcmd(command)
        assert p.noop().startswith(b"+OK")
    assert p.stat() == (0, 0)
    p.quit()


# -- 9. plaintext after STLS / STARTTLS ----------------------------------------------------

def test_plaintext_after_stls_and_starttls_is_a_client_error(server, log):
    pop = Line(server.ports["pop3"])
    assert pop.greeting.startswith(b"+OK")
    pop.send(b"STLS\r\n")
    assert pop.line().startswith(b"+OK")
    pop.send(b"USER alice@example.com\r\nPASS x\r\n" + b"plaintext " * 100 + b"\r\n")
    assert pop.closed()
    smtp = Line(server.ports["smtp"])
    assert smtp.greeting.startswith(b"220")
    smtp.send(b"EHLO client.example.org\r\n")
    assert smtp.reply().startswith(b"250")
    smtp.send(b"STARTTLS\r\n")
    assert smtp.reply().startswith(b"220")
    smtp.send(b"MAIL FROM:<x@example.org>\r\n" + b"plaintext " * 100 + b"\r\n")
    assert smtp.closed()
    added = log.added()
    assert added.count("TLS handshake failed") == 2, added
    # both listeners still serve
    pop_login(server).quit()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        assert s.noop()[0] == 250


# -- 11. an over-long AUTH line ------------------------------------------------------------

@pytest.mark.parametrize("start", [b"AUTH LOGIN\r\n", b"AUTH PLAIN\r\n",
                                   b"AUTH LOGIN YWxpY2VAZXhhbXBsZS5jb20=\r\n"])
def test_auth_line_too_long_is_500_5_5_6(server, start):
    s = Line(server.ports["submission"])
    assert s.greeting.startswith(b"220")
    s.send(b"EHLO client.example.org\r\n")
    assert s.reply().startswith(b"250")
    s.send(start)
    assert s.reply().startswith(b"334")
    s.send(b"A" * 5000 + b"\r\n")
    assert s.reply().startswith(b"500 5.5.6 ")
    s.send(b"NOOP\r\n")
    assert s.reply().startswith(b"250")
    s.close()


# -- 12. address literals ------------------------------------------------------------------

@pytest.mark.parametrize("literal", ["[999.1.1.1]", "[1.2.3]", "[IPv6:zz::]", "[1.2.3.4", "[]", "[IPv6:]",
                                     "[IPv6:1.2.3.4]", "[IPv6:fe80::1%eth0]", "[01.2.3.4]", "[tag:x]"])
def test_ehlo_with_an_invalid_address_literal_is_501(server, literal):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        code, text = s.docmd("EHLO", literal)
        assert code == 501 and text.startswith(b"5.5.4"), (literal, code, text)
        assert s.docmd("HELO", literal)[0] == 501


@pytest.mark.parametrize("literal", ["[127.0.0.1]", "[IPv6:::1]", "[ipv6:2001:db8::1]", "[IPv6:::ffff:192.0.2.1]"])
def test_ehlo_with_a_valid_address_literal_is_250(server, literal):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        assert s.docmd("EHLO", literal)[0] == 250


# -- SMTP SIZE= -------------------------------------------------------------------------------

def test_mail_size_parameter_that_is_not_ascii_digits_is_501(server):
    s = Line(server.ports["smtp"])
    assert s.greeting.startswith(b"220")
    s.send(b"EHLO client.example.org\r\n")
    assert s.reply().startswith(b"250")
    for size in ("\u00b2", "\u0663", "1" + "9" * 400, "", "-1", "12a"):
        s.send(f"MAIL FROM:<x@example.org> SIZE={size}\r\n".encode())
        reply = s.reply()
        assert reply.startswith(b"501 5.5.4 "), (size[:20], reply)
    s.send(b"MAIL FROM:<x@example.org> SIZE=100\r\nRCPT TO:<alice@example.com>\r\n")
    assert s.reply().startswith(b"250") and s.reply().startswith(b"250")
    s.close()


# -- a bug inside a session: one log entry, the protocol's goodbye, the process serves on ----------

def _injected_fault(*args, **kwargs):
    raise RuntimeError("injected fault")


def test_a_fault_inside_a_session_ends_it_with_the_protocols_goodbye(tmp_path, monkeypatch, caplog):
    """The fault is forced (NOOP made to raise) in an in-process server: a real bug would
    travel the same way."""
    root = make_root(tmp_path, accounts={ALICE: PASSWORD}, settings=SETTINGS)
    monkeypatch.setattr(Commands, "cmd_NOOP", _injected_fault)
    monkeypatch.setattr(Pop3Session, "cmd_NOOP", _injected_fault)
    monkeypatch.setattr(MailSMTP, "smtp_NOOP", _injected_fault)
    with running_server(root) as srv:
        imap = Line(srv.ports["imap"])
        imap.send(b"a NOOP\r\n")
        assert imap.line() == b"* BYE Internal error, closing the connection" and imap.closed()
        pop = Line(srv.ports["pop3"])
        pop.send(b"USER alice@example.com\r\nPASS " + PASSWORD.encode() + b"\r\n")
        assert pop.line().startswith(b"+OK") and pop.line().startswith(b"+OK")
        pop.send(b"NOOP\r\n")
        assert pop.line().startswith(b"-ERR [SYS/TEMP] Internal error") and pop.closed()
        smtp = Line(srv.ports["smtp"])
        assert smtp.greeting.startswith(b"220")
        smtp.send(b"NOOP\r\n")
        assert smtp.reply().startswith(b"421 4.3.0 ") and smtp.closed()
        time.sleep(0.3)
        faults = [r for r in caplog.records if r.exc_info and "injected fault" in str(r.exc_info[1])]
        assert len(faults) == 3, caplog.text
        # every listener goes on serving
        for port in ("imap", "pop3", "smtp"):
            client = Line(srv.ports[port])
            assert client.greeting[:1] in (b"*", b"+", b"2")
            client.close()
