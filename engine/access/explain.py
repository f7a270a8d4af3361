"""What the access lists say about one message, for `mailctl check message`: whether port
25 would take the connection, whether the sender is blocked, which address the checks
judge (an incoming relay's client), and whether the spam and virus checks run for it."""
from __future__ import annotations

from types import SimpleNamespace

from ..bans import Bans
from . import blocklists, gate, ranges
from .entries import AccessEntries
from .origin import original_client
from .patterns import in_networks, network_of


def explain(root, settings, ip: str, sender: str, header: bytes) -> dict:
    state = SimpleNamespace(bans=Bans(root, settings), access=AccessEntries(root))
    relays = [network_of(str(n)) for n in settings.access.incoming_relays]
    checked_as = ip
    if relays and in_networks(ip, relays):
        checked_as = original_client(header, relays) or ip
    spam, virus = ranges.checks_for(settings, checked_as)
    r = ranges.range_for(settings, ip)
    return {"connect_refused": gate.refusal(state, ip, "smtp"),
            "sender_blocked": blocklists.blocked(settings, state.access, "sender", [sender]) if sender else None,
            "checked_as": checked_as, "range": r.name if r else None,
            "spam_checks": spam, "virus_checks": virus}
