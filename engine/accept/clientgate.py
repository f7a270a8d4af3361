"""Which checks a client's mail meets, beyond the listener and authentication (asked by
the spam-side and virus stages, and by `mailctl check message`):

  - hMailServer's IP ranges (engine/access/ranges.py): a range may turn the spam checks
    (HELO checks, block lists, the spam score) or the virus scan off for its clients;
  - our incoming relays (access.incoming_relays, our backup MX hosts): at RCPT the client
    is the relay, so checks of the client's address (DNSBL, reverse DNS, HELO, the
    greylisting triplet) would judge our own relay; they wait until after DATA, when
    accesscheck.incoming_relay has put the original client in Envelope.client_ip.
"""
from __future__ import annotations

from ..access import ranges
from ..access.patterns import in_networks, network_of

_relays: tuple = (None, [])       # (the settings' list, its parsed networks): parsed once per load


def spam_checks_run(settings, ip: str) -> bool:
    return not settings.access.ranges or not ip or ranges.checks_for(settings, ip)[0]


def virus_checks_run(settings, ip: str) -> bool:
    return not settings.access.ranges or not ip or ranges.checks_for(settings, ip)[1]


def relay_networks(settings) -> list:
    global _relays
    listed = settings.access.incoming_relays
    if _relays[0] is not listed:
        _relays = (listed, [network_of(str(n)) for n in listed])
    return _relays[1]


def from_incoming_relay(settings, ip: str) -> bool:
    """Whether ip is one of our incoming relays (so RCPT-time address checks skip it)."""
    return bool(settings.access.incoming_relays) and in_networks(ip, relay_networks(settings))
