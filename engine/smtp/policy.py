"""Who may send what to whom: relay, sender ownership and recipient checks.

Every decision is made on the resolved address (after parse_address has lower-cased,
IDNA-encoded and validated it), never on the raw text, so `user%foreign@local`,
`foreign!user@local`, `"user@foreign"@local` and friends either resolve to a local
mailbox or are refused; nothing is ever relayed from port 25 (Postfix
allow_untrusted_routing = no semantics; protocol-notes.md "Relay control").
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .. import headers
from ..access import directions
from ..addresses import parse_address, parse_sender
from ..directory import POSTMASTER, Directory, Resolution
from ..errors import InvalidInput
from .replies import (AUTH_REQUIRED, BAD_ADDRESS, IP_LITERAL, LIST_AUTH_REQUIRED, RELAY_DENIED, ROUTE_REFUSED,
                      SENDER_NOT_LOCAL, SENDER_NOT_OWNED, Rejection)

SUBMISSION = ("submission", "submissions")


def inbound_route(settings, address: str) -> tuple[bool, str | None]:
    """Routes with accept = true (engine.outbound.routes) make us take mail for a foreign domain."""
    from ..outbound.routes import inbound
    return inbound(settings, address)


@dataclass
class Client:
    ip: str
    listener: str                 # smtp, submission or submissions
    user: str = ""                # the authenticated account address
    trusted: bool = False         # in relay.trusted_networks
    local_ip: str = ""            # the address it connected to (ours)
    memo: dict = field(default_factory=dict)    # kept for the connection (HELO and reverse DNS checks)

    @property
    def submission(self) -> bool:
        return self.listener in SUBMISSION


def in_networks(ip: str, networks: list[str]) -> bool:
    if not networks:                 # the usual case: no parsing per connection
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    for net in networks:
        try:
            if addr in ipaddress.ip_network(net, strict=False):
                return True
        except (ValueError, TypeError):
            continue
    return False


def may_relay(settings, client: Client) -> bool:
    """Relaying (a recipient outside our domains) needs AUTH on 587/465, or a trusted
    network on 587. Port 25 never relays, loopback included, unless the admin set
    relay.open_relay_for_trusted for a trusted network."""
    if client.submission:
        return bool(client.user) or client.trusted
    return client.trusted and settings.relay.open_relay_for_trusted


# -- senders ------------------------------------------------------------------------

def normalize_sender(text: str) -> str | None:
    """'' for the null sender; the normalised address; None when invalid."""
    if text in ("", "<>"):
        return ""
    try:
        return str(parse_sender(text))       # '/' too: SRS hashes carry it
    except InvalidInput:
        return None


def owned_addresses_match(settings, directory: Directory, user: str, sender: str) -> bool:
    """May the authenticated `user` send as `sender`? Own address (domain aliases too),
    an alias whose targets include the user, or relay.allowed_senders."""
    if not sender:
        return False
    account = directory.account(sender)
    if account is not None:
        return account.address == user
    try:
        a = parse_address(sender)
    except InvalidInput:
        return False
    d = directory.domain(a.domain)
    if d is not None:
        alias = d.alias_map.get(a.local)
        if alias is not None and alias.enabled and user in alias.targets:
            return True
    extra = settings.relay.allowed_senders.get(user, [])
    if isinstance(extra, str):
        extra = [extra]
    for item in extra:
        item = str(item).lower()
        if item == str(a) or (item.startswith("@") and item[1:] == a.domain):
            return True
    return False


def check_sender(settings, directory: Directory, client: Client, sender: str) -> Rejection | None:
    """MAIL FROM, given the normalised sender ('' = null sender)."""
    if client.submission and not client.user and not client.trusted:
        return AUTH_REQUIRED
    if client.user and not owned_addresses_match(settings, directory, client.user, sender):
        return SENDER_NOT_OWNED
    if client.submission and settings.relay.sender_must_be_local and not client.user:
        if not sender or directory.account(sender) is None:
            return SENDER_NOT_LOCAL
    return None


# -- recipients ----------------------------------------------------------------------

@dataclass
class Accepted:
    address: str
    resolution: Resolution
    max_size: int = 0                       # bytes; 0 = no per-domain limit
    mailboxes: list = field(default_factory=list)


def check_recipient(settings, directory: Directory, client: Client, sender: str,
                    text: str) -> Rejection | Accepted:
    """RCPT TO: accept (with where it resolves) or a rejection with the reference text."""
    address = text
    if "@" not in address:
        # RFC 5321 §4.5.1: <Postmaster> without a domain must be accepted
        if address.lower() == POSTMASTER:
            address = directory.postmaster()
        else:
            return BAD_ADDRESS
    domain = address.rpartition("@")[2]
    if domain.startswith("["):
        return IP_LITERAL
    res = directory.resolve(address, sender or None)
    if res.needs_authenticated_sender and not client.user:
        return LIST_AUTH_REQUIRED        # before membership: a forged member address gets no further
    if res.local_domain:
        if res.rejection:
            return res.rejection
        d = directory.domain(res.address.rpartition("@")[2])
        size = int(d.max_message_size_mb * 1024 * 1024) if d and d.max_message_size_mb else 0
        return Accepted(res.address, res, size, list(res.mailboxes))
    if res.rejection:
        return BAD_ADDRESS
    accepted, refusal = inbound_route(settings, res.address)
    if accepted:
        return Accepted(res.address, res)           # backup MX / relay domain: queued for its route
    if refusal:
        return ROUTE_REFUSED
    if may_relay(settings, client) or directions.relay_allowed(settings, directory, client.ip, sender):
        return Accepted(res.address, res)           # the IP range of the client may relay without AUTH
    return RELAY_DENIED


def header_senders(header_bytes: bytes) -> list[str]:
    """Addresses in the From: header(s) of a message header block."""
    from email.utils import getaddresses
    return [addr for _, addr in getaddresses(headers.field_values(header_bytes, "From")) if addr]
