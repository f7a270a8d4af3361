"""What the name a client gives in HELO/EHLO says, without asking DNS: is it a fully
qualified domain name or an address literal of the client (RFC 5321 §4.1.4, §2.3.5,
§4.1.3), and does it claim to be us (our host name, one of our domains, our address)?

Pure functions over strings (the SMTP session has already refused, with 501, anything
that is not even shaped like a name: engine/smtp/server.py). Each answers a problem
in a few words, or '' when there is none; the problem never quotes the name itself,
so it can go into a reply, a log line or a header as it is.
"""
from __future__ import annotations

import ipaddress
import re

MAX_NAME = 253                 # RFC 1035 §2.3.4: 255 octets on the wire, 253 as text
MAX_LABEL = 63
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")     # RFC 5321 sub-domain


def address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address text names (an IPv4-mapped IPv6 address as its IPv4 one), or None."""
    if ":" not in text and not text.replace(".", "").isdigit():
        return None                 # a host name: not worth ipaddress's two exceptions
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return _unmapped(ip)


def literal_address(helo: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of an address literal ([192.0.2.1], [IPv6:2001:db8::1]), else None."""
    if len(helo) < 3 or helo[0] != "[" or helo[-1] != "]":
        return None
    inner = helo[1:-1]
    if inner[:5].lower() == "ipv6:":
        text = inner[5:]
        if "%" in text:                 # no zone ids
            return None
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    try:
        return ipaddress.IPv4Address(inner)
    except ValueError:
        return None


def syntax_problem(helo: str, client_ip: str) -> str:
    """Why helo is not what RFC 5321 §4.1.1.1 asks for ('' when it is): a fully qualified
    domain name, or an address literal holding the client's own address."""
    if not helo:
        return "empty HELO"
    if not helo.isascii() or not helo.isprintable():
        return "HELO with characters that are not printable ASCII"
    if helo[0] == "[":
        ip = literal_address(helo)
        if ip is None:
            return "malformed address literal in HELO"
        client = address(client_ip)
        if client is not None and _unmapped(ip) != client:
            return "HELO address literal is not the client's address"
        return ""
    if address(helo) is not None:
        return "HELO is a bare IP address (an address literal needs brackets)"
    return name_problem(helo)


def name_problem(name: str) -> str:
    """Why name is not a fully qualified domain name ('' when it is)."""
    if len(name) > MAX_NAME:
        return "HELO name longer than 253 characters"
    if name.endswith("."):
        return "HELO name ends with a dot"
    labels = name.split(".")
    if len(labels) < 2:
        return "HELO is not a fully qualified domain name (one label)"
    if "" in labels:
        return "HELO name has an empty label"
    if "_" in name:
        return "HELO name has an underscore"
    if any(len(label) > MAX_LABEL for label in labels):
        return "HELO name has a label longer than 63 characters"
    if not all(_LABEL.match(label) for label in labels):
        return "HELO name has a label that does not start and end with a letter or digit"
    if labels[-1].isdigit():
        return "HELO name ends in a numeric label (not a domain name)"
    return ""


def names_us(helo: str, client_ip: str, our_names, our_ips, is_local_domain) -> str:
    """Why helo claims to be us ('' when it does not): one of our_names (host names, any
    case), a domain is_local_domain knows, or one of our_ips (bare or as a literal) when
    the client does not have that address itself."""
    if not helo:
        return ""
    ip = literal_address(helo) if helo[0] == "[" else address(helo)
    if ip is not None:
        ip = _unmapped(ip)
        ours = {a for a in map(address, our_ips) if a is not None}
        if ip in ours and ip != address(client_ip):
            return "HELO names our IP address"
        return ""
    name = helo.lower().rstrip(".")
    if not name:
        return ""
    if name in {n.lower().rstrip(".") for n in our_names if n}:
        return "HELO names our host name"
    if is_local_domain(name):
        return "HELO names one of our domains"
    return ""


def _unmapped(ip):
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip
