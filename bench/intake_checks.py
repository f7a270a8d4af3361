"""The checks-on mode of bench/smtp_intake.py (`--checks`): the same intake with every
inbound check on, against the loopback DNS server of the tests (tests/dnsserver.py, in a
process of its own so it does not share the client's interpreter), beside a server with
them off; messages/s at each concurrency, the ratio and the cost per message.

Checks on: SPF (pass), DKIM (an RSA-2048 signature verified per message), DMARC (p=none,
aligned), the four HELO and sender checks (HELO syntax and forgery, forward-confirmed
reverse DNS, the sender domain's MX), a DNSBL on the client IP, an RHSBL on the sender
and HELO domains, a URI list on the body's URL domain, greylisting (the client is in
greylist.whitelist_networks: bypassed), the spam score (nothing whitelisted). Nothing is
listed (the usual case), so every message is delivered to INBOX. The DNS cache is warm:
the loopback server gives its answers a TTL of 300 s, so each serving process keeps them
(mailauth.dns_cache_entries, and dnsbl.cache_s for the lists) after the warm-up round. Checks off: no SPF/DKIM/DMARC, no HELO checks,
no lists, greylisting and spam scoring off.
"""
from __future__ import annotations

import asyncio
import base64
import multiprocessing
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SENDER_DOMAIN, HELO = "sender.test", "mx.sender.test"
SENDER = f"news@{SENDER_DOMAIN}"
SELECTOR = "bench"


def _key_pair() -> tuple[bytes, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, base64.b64encode(der).decode()


def zone(public_key: str) -> dict:
    return {SENDER_DOMAIN: {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"], "MX": [(10, HELO)]},
            HELO: {"A": ["127.0.0.1"]},
            "1.0.0.127.in-addr.arpa": {"PTR": [HELO]},
            f"_dmarc.{SENDER_DOMAIN}": {"TXT": ["v=DMARC1; p=none"]},
            f"{SELECTOR}._domainkey.{SENDER_DOMAIN}": {"TXT": [f"v=DKIM1; k=rsa; p={public_key}"]}}


def signed_message(size: int, pem: bytes, to: str) -> bytes:
    import dkim
    body = (f"From: News <{SENDER}>\r\nTo: <{to}>\r\nSubject: bench\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
            f"Message-ID: <bench@{SENDER_DOMAIN}>\r\n\r\nSee https://www.shop.example/offer today.\r\n").encode()
    body += (b"x" * 76 + b"\r\n") * max(0, (size - len(body)) // 78)
    return dkim.sign(body, SELECTOR.encode(), SENDER_DOMAIN.encode(), pem,
                     include_headers=[b"from", b"to", b"subject", b"date", b"message-id"]) + body


def checks_settings(dns_address: str, on: bool) -> dict:
    """The settings of the server with the checks on (or all off)."""
    base = {"queue.nameservers": [dns_address], "mailauth.dns_timeout_s": 2.0}
    if not on:
        return {**base, "mailauth.spf": False, "mailauth.dkim": False, "mailauth.dmarc": False,
                "spam.enabled": False, "greylist.enabled": False,
                **{f"helo_checks.{c}": "off" for c in ("helo_syntax", "helo_forged", "reverse_dns", "sender_domain")}}
    return {**base, "mailauth.spf": True, "mailauth.dkim": True, "mailauth.dmarc": True,
            "helo_checks.ignore_networks": [], "mailauth.ignore_networks": [],
            **{f"helo_checks.{c}": "score" for c in ("helo_syntax", "helo_forged", "reverse_dns", "sender_domain")},
            "dnsbl.client_lists": [{"zone": "bl.test", "score": 3.0}],
            "dnsbl.domain_lists": [{"zone": "dbl.test", "score": 2.0}],
            "dnsbl.uri_lists": [{"zone": "uri.test", "score": 2.0}],
            "greylist.enabled": True, "spam.enabled": True, "spam.whitelist_networks": []}


def _serve_dns(records: dict, conn) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from dnsserver import DNSServer
    server = DNSServer(records, ttl=300)    # answers cached per process, as real ones are
    conn.send(server.address)
    conn.recv()                 # until told to stop
    server.close()


class DNSProcess:
    """tests/dnsserver.py serving records in a child process."""

    def __init__(self, records: dict):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve_dns, args=(records, child), daemon=True)
        self.proc.start()
        self.address = self.conn.recv()

    def close(self) -> None:
        self.conn.send("stop")
        self.proc.join(10)


async def send_all(port: int, count: int, conc: int, data: bytes, to: str) -> None:
    """One message per connection, conc at a time, as the plain mode's asyncio client."""
    left = [count]

    async def reply(reader):
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                return line

    async def worker():
        while left[0] > 0:
            left[0] -= 1
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reply(reader)
            writer.write(f"EHLO {HELO}\r\n".encode())
            await reply(reader)
            writer.write(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{to}>\r\nDATA\r\n".encode())
            for _ in range(3):
                r = await reply(reader)
                assert r[:1] in (b"2", b"3"), r
            writer.write(data + b".\r\nQUIT\r\n")
            r = await reply(reader)
            assert r.startswith(b"250"), r
            await reply(reader)
            writer.close()

    await asyncio.gather(*[worker() for _ in range(conc)])
