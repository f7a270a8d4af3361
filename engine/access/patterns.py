"""The two kinds of access-list entry, parsed and matched.

- a network: an IP address or a CIDR network (192.0.2.0/24, 2001:db8::/32); an IPv4
  address an IPv6 socket shows as ::ffff:a.b.c.d is matched as IPv4;
- an address pattern: an address (user@example.com), a domain (example.com or
  @example.com: every address at it), or either with wildcards: '*' any run of
  characters, '?' one character (*@*.example.com, sales@*, *spam*). Matching is
  case-insensitive and linear in time, whatever the pattern (no regular expressions).
"""
from __future__ import annotations

import functools
import ipaddress
import re

from ..errors import InvalidInput

MAX_PATTERN = 320              # an address is at most 254 octets; room for wildcards
_PATTERN_CHARS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@\-]+\Z")   # RFC 5322 atext, '.', '@'

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def shown(text: str) -> str:
    text = str(text)
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def parse_network(text: str) -> Network:
    """A network from '192.0.2.1', '192.0.2.0/24', '[2001:db8::1]' or '2001:db8::/32';
    host bits are cleared (192.0.2.7/24 is 192.0.2.0/24). InvalidInput otherwise."""
    raw = str(text).strip(" ")
    if not raw or len(raw) > 64 or not raw.isascii() or not raw.isprintable():
        raise InvalidInput(f"{shown(text)} is not an IP address or network (like 192.0.2.0/24)")
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    if "%" in raw:             # IPv6 zone ids name an interface, not a network
        raise InvalidInput(f"{shown(text)}: an IPv6 zone id is not allowed")
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise InvalidInput(f"{shown(text)} is not an IP address or network (like 192.0.2.0/24)") from None
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.network_address.ipv4_mapped:
        mapped = net.network_address.ipv4_mapped
        net = ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}", strict=False)
    return net


def network_text(text: str) -> str:
    """The canonical text of a network entry: a lone address without its /32 or /128."""
    net = parse_network(text)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


@functools.lru_cache(maxsize=4096)
def network_of(canonical: str) -> Network:
    """parse_network of an entry's stored value, parsed once (an entry is asked per connection)."""
    return parse_network(canonical)


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client's address (IPv4-mapped IPv6 made IPv4), or None when it is none."""
    try:
        addr = ipaddress.ip_address(str(text).strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def best_match(ip: str, networks) -> tuple[int, object] | None:
    """Of (network, tag) pairs, the longest prefix containing ip: (prefix length, tag)."""
    addr = parse_ip(ip)
    if addr is None:
        return None
    best = None
    for net, tag in networks:
        if addr.version == net.version and addr in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, tag)
    return best


def in_networks(ip: str, networks) -> bool:
    """Whether ip is in one of the parsed networks."""
    addr = parse_ip(ip) if networks else None
    return addr is not None and any(addr.version == n.version and addr in n for n in networks)


def parse_pattern(text: str) -> str:
    """An address pattern in its canonical form (lower case; a domain as '@domain');
    InvalidInput when it is not one."""
    raw = str(text).strip(" ").lower()
    if not raw or len(raw) > MAX_PATTERN:
        raise InvalidInput(f"{shown(text)} is not an address or domain pattern (1 to {MAX_PATTERN} characters)")
    if not _PATTERN_CHARS.match(raw):
        raise InvalidInput(f"{shown(text)} is not an address or domain pattern: only the characters of an "
                           f"address, '*' and '?' (like *@spam.example or sales@*)")
    if raw.count("@") > 1:
        raise InvalidInput(f"{shown(text)} has more than one '@'")
    if "@" not in raw and "*" not in raw.replace("*.", ""):
        # a bare domain: every address at it (a pattern of wildcards alone matches whole addresses)
        raw = "@" + raw
    local, _, domain = raw.rpartition("@")
    if "@" in raw and not domain:
        raise InvalidInput(f"{shown(text)} has nothing after '@' (use @* for any domain)")
    if domain.strip("*?") and (".." in domain or domain.startswith(".") or domain.endswith(".")):
        raise InvalidInput(f"{shown(text)}: {shown(domain)} is not a domain")
    return raw


def matches(pattern: str, address: str) -> bool:
    """Whether a canonical pattern (parse_pattern) matches an address. '@domain' matches
    every address at that domain (any local part); the rest match the whole address."""
    address = address.lower()
    if pattern.startswith("@"):
        return "@" in address and wildcard(pattern[1:], address.rpartition("@")[2])
    return wildcard(pattern, address)


def wildcard(pattern: str, text: str) -> bool:
    """'*' (any run) and '?' (one character) over text, in O(len(pattern) * len(text))
    at worst: on a mismatch it only goes back to just after the last '*'."""
    p = t = 0
    star_p, star_t = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":      # first: a '*' in the text is a character
            star_p, star_t = p, t
            p += 1
        elif p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif star_p >= 0:
            p = star_p + 1
            star_t += 1
            t = star_t
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)
