"""The delivery directions of hMailServer's IP ranges (ranges.py): local_to_local,
local_to_external, external_to_local, external_to_external, each 'allow', 'auth' or
'deny' per range; asked by the relay policy (engine/smtp/policy.py, relaying without
AUTH) and the access_lists stage (engine/accept/accesscheck.py, refusals)."""
from __future__ import annotations

from ..outbound.routes import inbound
from .ranges import range_for


def domain_is_local(settings, directory, address: str) -> bool:
    """One of our domains, or one an accept = true route makes us take mail for."""
    if "@" not in address:
        return False
    if directory.domain(address.rpartition("@")[2].lower()) is not None:
        return True
    return inbound(settings, address)[0]


def relay_allowed(settings, directory, client_ip: str, sender: str) -> bool:
    """The client's range allows mail to an external recipient without AUTH ('allow' for
    local_to_external or external_to_external): the relay policy accepts it then."""
    r = range_for(settings, client_ip) if settings.access.ranges else None
    return r is not None and r.rule(domain_is_local(settings, directory, sender), False)[1] == "allow"


def direction_refusal(settings, directory, client_ip: str, vouched: bool, sender: str,
                      recipient: str) -> tuple[str, str] | None:
    """(the rule refusing it: 'deny' or 'auth', the direction) when the client's range
    forbids this delivery, or asks AUTH of a client that has none; None when it may go."""
    r = range_for(settings, client_ip) if settings.access.ranges else None
    if r is None:
        return None
    direction, rule = r.rule(domain_is_local(settings, directory, sender),
                             domain_is_local(settings, directory, recipient))
    if rule == "deny" or (rule == "auth" and not vouched):
        return rule, f"{direction} from range {r.name}"
    return None
