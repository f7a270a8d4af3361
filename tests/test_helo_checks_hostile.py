"""Hostile HELO names against the HELO checks set to refuse: very long, control
characters, bytes that are not ASCII, a thousand labels, broken address literals. Each
gets one clear reply (501 at EHLO, or 550 at RCPT naming the problem without echoing the
name), never a traceback, and the server goes on serving. And two serving processes
(`mailctl serve`, server.processes = 2) apply the checks alike, each with its own
per-connection answers."""
from __future__ import annotations

import logging
import smtplib
import socket

import pytest

from dnsserver import DNSServer
from helpers_process import smtp_sessions_in_two_processes
from helpers_server import make_root, running_server, serve_process, wait_for_processes

BOB = "bob@example.com"
HOST = "mx.example.com"
ZONE = {"1.0.0.127.in-addr.arpa": {"PTR": ["client.example.net"]}, "client.example.net": {"A": ["127.0.0.1"]},
        "mx.example.org": {"MX": [(10, "in.mx.example.org")]}}
REJECT_ALL = {"helo_checks.helo_syntax": "reject", "helo_checks.helo_forged": "reject",
              "helo_checks.reverse_dns": "reject", "helo_checks.sender_domain": "reject",
              "helo_checks.ignore_networks": []}


class Line:
    """SMTP over a bare socket: what no library would send."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buf = b""
        self.greeting = self.reply()

    def reply(self) -> list[bytes]:
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed after {lines!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return lines

    def cmd(self, data: bytes) -> bytes:
        self.sock.sendall(data + b"\r\n")
        return self.reply()[-1]

    def close(self) -> None:
        self.sock.close()


HOSTILE = [
    b"a" * 5000,                                   # past the command line limit
    b"a." * 999 + b"a",                             # a thousand labels
    b"a." * 123 + b"examplex",                      # 254 characters: shaped like a name, one too long
    b"bad\x01name.example", b"bad\x00name.example", b"tab\there.example",
    b"caf\xc3\xa9.example", b"\xff\xfe.example",
    b"[192.0.2.1", b"[IPv6:zz::zz]", b"[192.0.2.1]x", b"[" + b"1" * 300 + b"]",
    b"a..example", b"x_y.example", b"localhost", b"127.0.0.1", b"[192.0.2.9]", b"-a.example", b"",
]


@pytest.mark.parametrize("verb", [b"EHLO", b"HELO"])
def test_hostile_helo_names_get_a_clear_reply_and_the_server_serves_on(tmp_path, caplog, verb):
    caplog.set_level(logging.INFO, logger="mailctl")
    dns = DNSServer(ZONE)
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings={
        "queue.offline": True, "server.hostname": HOST, "queue.nameservers": [dns.address],
        "mailauth.dns_timeout_s": 0.5, "limits.max_invalid_commands": 1000, **REJECT_ALL})
    try:
        with running_server(root) as srv:
            port = srv.ports["smtp"]
            for name in HOSTILE:
                c = Line(port)
                try:
                    said = c.cmd(verb + b" " + name)
                    if said[:1] == b"2":             # shaped like a name: the checks answer at RCPT
                        assert c.cmd(b"MAIL FROM:<carol@mx.example.org>")[:3] == b"250"
                        said = c.cmd(b"RCPT TO:<bob@example.com>")
                        assert said.startswith(b"550 5.7.1 Rejected: HELO "), (name, said)
                    else:
                        assert said[:3] in (b"500", b"501"), (name, said)
                    assert said.isascii() and all(32 <= b < 127 for b in said), said
                    if len(name) > 20:
                        assert name[:20] not in said          # the reply does not echo the name
                    assert c.cmd(b"QUIT")[:3] == b"221"
                finally:
                    c.close()
            # and a well-behaved client still gets its mail through
            with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
                s.ehlo("client.example.net")
                s.mail("carol@mx.example.org")
                assert s.rcpt(BOB)[0] == 250
                assert s.data(b"Subject: fine\r\n\r\nhello\r\n")[0] == 250
    finally:
        dns.close()
    assert "Traceback" not in caplog.text and "internal error" not in caplog.text



def test_two_serving_processes_apply_the_checks_alike(tmp_path):
    dns = DNSServer(ZONE)
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings={
        "server.processes": 2, "queue.offline": True, "server.hostname": HOST,
        "queue.nameservers": [dns.address], "mailauth.dns_timeout_s": 0.5, **REJECT_ALL})
    try:
        with serve_process(root) as proc:
            wait_for_processes(root, 2)
            sessions = smtp_sessions_in_two_processes(proc.ports["smtp"], proc.proc.pid).values()
            try:
                for s in sessions:
                    for helo, code in ((HOST, 550), ("client.example.net", 250), ("x_y.example", 550),
                                       ("client.example.net", 250)):
                        s.ehlo(helo)
                        assert s.mail("carol@mx.example.org")[0] == 250
                        assert s.rcpt(BOB)[0] == code, (helo, code)
                        s.rset()
                    assert s.mail("carol@nowhere.example.org")[0] == 250
                    assert s.rcpt(BOB) == (550, b"5.7.1 Sender Domain Does Not Have Any MX Records "
                                                b"(nowhere.example.org has neither MX nor A/AAAA, so it cannot "
                                                b"receive replies)")
            finally:
                for s in sessions:
                    s.close()
        # each process asked for the PTR of its own connection once, however many transactions
        assert dns.queries.count(("1.0.0.127.in-addr.arpa", "PTR")) == 2
    finally:
        dns.close()
