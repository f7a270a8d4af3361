"""The HELO name without DNS (engine/heloname.py): RFC 5321 §4.1.1.1's fully qualified domain
name or address literal of the client, and a name that claims to be us."""
from __future__ import annotations

import pytest

from engine import heloname


@pytest.mark.parametrize("helo, client, problem", [
    ("mail.example.com", "192.0.2.1", ""),
    ("a.b", "192.0.2.1", ""),
    ("xn--bcher-kva.example", "192.0.2.1", ""),
    ("MAIL-1.Example.COM", "192.0.2.1", ""),
    ("[192.0.2.1]", "192.0.2.1", ""),
    ("[192.0.2.1]", "::ffff:192.0.2.1", ""),                 # a dual-stack listener's view of it
    ("[IPv6:2001:db8::1]", "2001:db8::1", ""),
    ("[ipv6:2001:DB8::1]", "2001:db8::1", ""),
    ("[192.0.2.1]", "192.0.2.2", "HELO address literal is not the client's address"),
    ("[IPv6:2001:db8::1]", "192.0.2.1", "HELO address literal is not the client's address"),
    ("[2001:db8::1]", "2001:db8::1", "malformed address literal in HELO"),    # the IPv6: tag is required
    ("[192.0.2.01]", "192.0.2.1", "malformed address literal in HELO"),
    ("[192.0.2.1", "192.0.2.1", "malformed address literal in HELO"),
    ("[IPv6:fe80::1%eth0]", "fe80::1", "malformed address literal in HELO"),
    ("[]", "192.0.2.1", "malformed address literal in HELO"),
    ("192.0.2.1", "192.0.2.1", "HELO is a bare IP address (an address literal needs brackets)"),
    ("2001:db8::1", "2001:db8::1", "HELO is a bare IP address (an address literal needs brackets)"),
    ("localhost", "192.0.2.1", "HELO is not a fully qualified domain name (one label)"),
    ("bad_name.example", "192.0.2.1", "HELO name has an underscore"),
    ("a..example", "192.0.2.1", "HELO name has an empty label"),
    (".example.com", "192.0.2.1", "HELO name has an empty label"),
    ("mail.example.com.", "192.0.2.1", "HELO name ends with a dot"),
    ("-a.example", "192.0.2.1", "HELO name has a label that does not start and end with a letter or digit"),
    ("a-.example", "192.0.2.1", "HELO name has a label that does not start and end with a letter or digit"),
    ("a" * 64 + ".example", "192.0.2.1", "HELO name has a label longer than 63 characters"),
    (".".join(["a"] * 127) + ".ex", "192.0.2.1", "HELO name longer than 253 characters"),
    ("192.0.2.999", "192.0.2.1", "HELO name ends in a numeric label (not a domain name)"),
    ("", "192.0.2.1", "empty HELO"),
    ("caf\u00e9.example", "192.0.2.1", "HELO with characters that are not printable ASCII"),
    ("a\x00.example", "192.0.2.1", "HELO with characters that are not printable ASCII"),
    ("a b.example", "192.0.2.1", "HELO name has a label that does not start and end with a letter or digit"),
])
def test_syntax(helo, client, problem):
    assert heloname.syntax_problem(helo, client) == problem


OURS = ("mx.example.com", "out.example.com")


def local(name: str) -> bool:
    return name in ("example.com", "example.org")


@pytest.mark.parametrize("helo, client, problem", [
    ("mx.example.com", "192.0.2.1", "HELO names our host name"),
    ("MX.EXAMPLE.COM.", "192.0.2.1", "HELO names our host name"),
    ("out.example.com", "192.0.2.1", "HELO names our host name"),
    ("example.org", "192.0.2.1", "HELO names one of our domains"),
    ("[198.51.100.1]", "192.0.2.1", "HELO names our IP address"),
    ("198.51.100.1", "192.0.2.1", "HELO names our IP address"),
    ("[IPv6:::ffff:198.51.100.1]", "192.0.2.1", "HELO names our IP address"),
    ("[198.51.100.1]", "198.51.100.1", ""),         # a client on our own address is us
    ("mail.example.org", "192.0.2.1", ""),          # a host in our domain need not be ours
    ("client.example.net", "192.0.2.1", ""),
    ("[192.0.2.1]", "192.0.2.1", ""),
    ("", "192.0.2.1", ""), (".", "192.0.2.1", ""), ("[", "192.0.2.1", ""),
])
def test_names_us(helo, client, problem):
    assert heloname.names_us(helo, client, OURS, ["198.51.100.1", "not-an-ip"], local) == problem
