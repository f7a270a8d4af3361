"""Shared by the message-authentication tests (test_auth_*.py): a real server whose
port 25 checks SPF/DKIM/ARC/DMARC against the loopback DNS server, DKIM keys (RSA and
ed25519) published in it, and reading what was delivered."""
from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import smtplib

import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dnsserver import DNSServer
from engine.maildir import Maildir
from helpers_server import make_root, running_server

BOB = "bob@example.com"
HOST = "mx.example.com"          # our authserv-id


@contextlib.contextmanager
def auth_server(tmp_path, zone: dict, **settings):
    """(server, dns server, root): checks on for 127.0.0.1 (mailauth.ignore_networks = [])."""
    dns_server = DNSServer(zone)
    values = {"queue.offline": True, "server.hostname": HOST, "queue.nameservers": [dns_server.address],
              "mailauth.ignore_networks": [], "mailauth.dns_timeout_s": 0.5, **settings}
    root = make_root(tmp_path, accounts={BOB: "bob-password-1", "alice@example.com": "alice-password-1"},
                     settings=values)
    try:
        with running_server(root) as srv:
            yield srv, dns_server, root
    finally:
        dns_server.close()


def send(srv, sender: str, data: bytes, helo: str = "client.example", rcpt: str = BOB):
    """(code, text) of the DATA reply (or of the first refusal before it)."""
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.ehlo(helo)
        code, text = s.mail(sender)
        if code != 250:
            return code, text.decode()
        code, text = s.rcpt(rcpt)
        if code != 250:
            return code, text.decode()
        code, text = s.data(data)
        return code, text.decode()


def delivered(root, folder: str = "INBOX", user: str = "bob") -> list[email.message.Message]:
    box = Maildir.for_account(root, "example.com", user).folder(folder)
    return [email.message_from_bytes(box.read(x), policy=email.policy.compat32) for x in box.sync()]


def only(root, folder: str = "INBOX") -> email.message.Message:
    [m] = delivered(root, folder)
    return m


def auth_results(msg) -> list[str]:
    """Every Authentication-Results field, unfolded."""
    return [" ".join(str(v).split()) for v in msg.get_all("Authentication-Results") or []]


def ours(msg) -> str:
    [mine] = [v for v in auth_results(msg) if v.startswith(HOST + ";")]
    return mine


def mail(from_: str, subject: str = "hello", body: str = "Hello there.\r\nSecond line.\r\n",
         extra: str = "") -> bytes:
    return (f"From: {from_}\r\nTo: {BOB}\r\nSubject: {subject}\r\nDate: Sat, 05 Dec 2026 07:00:00 +0000\r\n"
            f"Message-ID: <{abs(hash((from_, subject, body)))}@test>\r\n{extra}\r\n{body}").encode()


class Key:
    """A DKIM key: private (for dkimpy's sign) and its DNS record."""

    def __init__(self, kind: str = "rsa", bits: int = 2048):
        self.kind = kind
        if kind == "ed25519":
            sk = nacl.signing.SigningKey.generate()
            self.private = base64.b64encode(bytes(sk))
            self.record = "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(sk.verify_key)).decode()
            self.algorithm = b"ed25519-sha256"
        else:
            k = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            self.private = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
            pub = k.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
            self.record = "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()
            self.algorithm = b"rsa-sha256"

    def publish(self, dns_server, selector: str, domain: str) -> None:
        dns_server.set(f"{selector}._domainkey.{domain}", {"TXT": [self.record]})

    def sign(self, message: bytes, selector: str, domain: str, canon=(b"relaxed", b"relaxed"),
             length: bool = False) -> bytes:
        import dkim
        sig = dkim.sign(message, selector.encode(), domain.encode(), self.private, canonicalize=canon,
                        signature_algorithm=self.algorithm, length=length,
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        return sig + message
