"""The keys of mailctl.toml's schema (engine/settings.py) and the checks their values pass.

A check takes a value of the key's type and returns a problem (a sentence for the
administrator) or None. Modules holding a section of the schema import them from here.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable

from .addresses import normalize_domain, parse_address
from .errors import InvalidInput


@dataclass(frozen=True)
class Key:
    default: Any
    type: type | tuple
    doc: str
    check: Callable[[Any], str | None] | None = None   # returns a problem, or None


def in_range(lo: float, hi: float | None = None) -> Callable[[Any], str | None]:
    def check(v):
        if v < lo or (hi is not None and v > hi):
            return f"must be between {lo} and {hi}" if hi is not None else f"must be at least {lo}"
        return None
    return check


def port_number(v):
    return None if 1 <= v <= 65535 else "must be a port number from 1 to 65535"


def listen_port(v):
    # 0 asks the OS for a free port (tests); the port in use is written to run/ports.toml
    return None if 0 <= v <= 65535 else "must be a port number from 1 to 65535 (0 = any free port)"


def one_of(*choices):
    def check(v):
        return None if v in choices else "must be one of " + ", ".join(repr(c) for c in choices)
    return check


def networks(v):
    for item in v:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"{item!r} is not an IP address or network (like 192.0.2.0/24)"
    return None


def ip_addresses(v):
    for item in v:
        try:
            ipaddress.ip_address(item)
        except ValueError:
            return f"{item!r} is not an IP address"
    return None


def nameservers(v):
    for item in v:
        host, _, port = str(item).rpartition(":") if str(item).count(":") == 1 else (str(item), "", "")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return f"{item!r} is not an IP address or 'ip:port'"
        if port and (not port.isdigit() or not 1 <= int(port) <= 65535):
            return f"{item!r}: port must be 1 to 65535"
    return None


def durations(v):
    for item in v:
        if not isinstance(item, (int, float)) or isinstance(item, bool) or item < 0:
            return "must be a list of minutes (numbers, 0 or more)"
    return None


_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


def hostname(v):
    """An RFC 1123 host name: it goes into the SMTP greeting, HELO and Received headers."""
    if len(v) > 253 or not all(_HOST_LABEL.match(label) for label in v.split(".")):
        return (f"{shown(v)} is not a host name (letters, digits, inner hyphens and dots, "
                f"like mail.example.com)")
    return None


def optional(check):
    return lambda v: None if v == "" else check(v)


def host_or_ip_problem(v: str) -> str | None:
    """Why v is neither a host name nor an IP address (None when it is one)."""
    try:
        ipaddress.ip_address(v)
        return None
    except ValueError:
        return hostname(v)


def ip_address(v):
    try:
        ipaddress.ip_address(v)
        return None
    except ValueError:
        return f"{shown(v)} is not an IP address"


def parses(parse):
    """A check from a parser that raises InvalidInput: its message is the problem."""
    def check(v):
        try:
            parse(v)
        except InvalidInput as e:
            return str(e)
        return None
    return check


domain, address = parses(normalize_domain), parses(parse_address)


def domains(v):
    return next((p for p in map(domain, v) if p), None)


def senders(v):
    for login, addresses in v.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            return f"{login}: must be a list of addresses"
        problem = next((p for p in map(address, [login, *addresses]) if p), None)
        if problem:
            return problem
    return None


def ip_patterns(v):
    from .greylist import pattern_problem
    return next((p for p in (pattern_problem(str(x)) for x in v) if p), None)


def domain_patterns(v):
    return next((p for p in (domain(str(x).replace("*", "x")) for x in v) if p), None)


def non_empty(v):
    return "must not be empty" if v == "" else None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown(v: str) -> str:
    return repr(v[:80] + ("..." if len(v) > 80 else ""))


def control_problem(v) -> str | None:
    """Every string of mailctl.toml ends up in a protocol line, a header, a log line or a
    path: none may hold line breaks or other control characters."""
    values = v if isinstance(v, list) else v.values() if isinstance(v, dict) else [v]
    for item in values:
        texts = item if isinstance(item, list) else [item]
        bad = next((t for t in texts if isinstance(t, str) and _CONTROL.search(t)), None)
        if bad is not None:
            return f"{shown(bad)} contains a line break or another control character"
    return None
