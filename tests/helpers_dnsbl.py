"""Shared by the spam-score and block-list tests (test_spamscore*.py, test_dnsbl*.py): a
real server whose port 25 asks block lists served by the loopback DNS server, clients
from chosen loopback addresses (127.0.0.x are all this machine's), and what landed where."""
from __future__ import annotations

import contextlib
import email
import email.policy
import smtplib

from dnsserver import DNSServer
from engine import settings as settings_mod
from engine.maildir import Maildir
from helpers_server import make_root, running_server

BOB = "bob@example.com"


def listed(zone: str, *ips: str, answer: str = "127.0.0.2") -> dict:
    """DNS entries listing each IPv4 address in zone with answer."""
    return {".".join(reversed(ip.split("."))) + "." + zone: {"A": [answer]} for ip in ips}


def block_list(zone: str, score: float = 0, reject: str = "", **more) -> dict:
    return {"zone": zone, "score": score, **({"reject": reject} if reject else {}), **more}


@contextlib.contextmanager
def list_server(tmp_path, zone: dict, accounts=None, domains=("example.com",), prepare=None, **settings):
    """(server, dns server, root): block lists asked of the loopback DNS server, the spam
    whitelist empty (loopback is in it by default), nothing kept between lookups;
    prepare(root, settings) runs before the server starts."""
    dns_server = DNSServer(zone)
    values = {"queue.offline": True, "queue.nameservers": [dns_server.address], "spam.whitelist_networks": [],
              "dnsbl.cache_s": 0, "dnsbl.dns_timeout_s": 0.5, **settings}
    root = make_root(tmp_path, domains=domains, accounts=accounts or {BOB: "bob-password-1"}, settings=values)
    if prepare is not None:
        prepare(root, settings_mod.load(root.config_file))
    try:
        with running_server(root) as srv:
            yield srv, dns_server, root
    finally:
        dns_server.close()


def send(port: int, data: bytes, source: str = "127.0.0.1", sender: str = "carol@sender.example",
         rcpts=(BOB,), helo: str = "client.example", host: str = "127.0.0.1"):
    """(code, text) of the first refusal, or of the end of DATA."""
    with smtplib.SMTP(host, port, timeout=20, source_address=(source, 0)) as s:
        s.ehlo(helo)
        code, text = s.mail(sender)
        if code != 250:
            return code, text.decode()
        for r in rcpts:
            code, text = s.rcpt(r)
            if code != 250:
                return code, text.decode()
        code, text = s.data(data)
        return code, text.decode()


def message(subject: str, body: str = "Hello there.\r\n", extra: str = "") -> bytes:
    return (f"From: carol@sender.example\r\nTo: {BOB}\r\nSubject: {subject}\r\n{extra}\r\n{body}").encode()


def delivered(root, folder: str = "INBOX", user: str = "bob", domain: str = "example.com") -> dict:
    """Subject -> message of a folder."""
    box = Maildir.for_account(root, domain, user).folder(folder)
    msgs = [email.message_from_bytes(box.read(x), policy=email.policy.compat32) for x in box.sync()]
    return {str(m["Subject"]): m for m in msgs}
