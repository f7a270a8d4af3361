"""The access-list stages of the pipeline (engine/access/ holds the lists themselves):

- access_lists, at RCPT TO: the sender block list (clients that did not authenticate),
  the recipient block list (every client): 550 5.7.1; then the delivery direction the
  client's IP range allows (550 5.7.1 Delivery Is Not Allowed To This Address, or 530
  5.7.0 when the range wants AUTH);
- incoming_relay, after DATA: mail from one of access.incoming_relays is checked with
  the address of the relay's client (its Received field): Envelope.client_ip becomes that,
  Envelope.peer_ip keeps the relay's (our Received line and the log name the relay).

Every refusal is logged with its reason and counted (runtime counters access_*).
"""
from __future__ import annotations

from ..access import blocklists, directions
from ..access.origin import original_client
from ..access.patterns import in_networks, network_of
from ..smtp import replies
from .arrival import Arrival
from .rcpt import RcptCheck
from .verdicts import CONTINUE, Reject


def _refused(check: RcptCheck, reply: str, counter: str, why: str) -> Reject:
    rt = check.runtime
    rt.log.info("access: %s: RCPT TO <%s> from <%s> refused: %s", check.client.ip, check.address[:100],
                check.sender[:100], why)
    rt.count(counter)
    return Reject(reply, f"{check.address[:100]}=access")


async def access_lists(check: RcptCheck):
    rt, client = check.runtime, check.client
    settings = rt.settings
    if check.sender and not client.user:
        hit = blocklists.blocked(settings, rt.access, "sender", [check.sender])
        if hit:
            return _refused(check, replies.SENDER_BLOCKED, "access_sender_blocked", f"sender matches {hit}")
    resolved = check.result.address if check.result is not None else ""
    refused = recipient_refusal(settings, rt.access, rt.directory, client.ip, bool(client.user or client.trusted),
                                check.sender, check.address, resolved)
    if refused:
        return _refused(check, *refused)
    return CONTINUE


def recipient_refusal(settings, entries, directory, ip: str, vouched: bool, sender: str, address: str,
                      resolved: str) -> tuple[str, str, str] | None:
    """(reply, counter, why) when the recipient block list or the client's IP range
    refuses this recipient, else None (`mailctl check message --to` asks it too)."""
    forms = blocklists.with_base([address, resolved], settings.relay.recipient_delimiter)
    hit = blocklists.blocked(settings, entries, "recipient", forms)
    if hit:
        return replies.RECIPIENT_BLOCKED, "access_recipient_blocked", f"recipient matches {hit}"
    refused = directions.direction_refusal(settings, directory, ip, vouched, sender, resolved or address)
    if refused:
        rule, why = refused
        if rule == "deny":
            return replies.RELAY_DENIED, "access_direction_denied", why
        return replies.AUTH_REQUIRED, "access_auth_required", f"{why} needs AUTH"
    return None


def incoming_relay(arrival: Arrival):
    """For mail from one of our backup MX hosts, the checks after this see its client."""
    env = arrival.envelope
    relays = arrival.settings.access.incoming_relays
    if not env.by_smtp or not relays or env.auth_user:
        return CONTINUE
    nets = [network_of(str(n)) for n in relays]
    if not in_networks(env.client_ip, nets):
        return CONTINUE
    origin = original_client(arrival.header_block(), nets)
    if origin is None:
        arrival.log.info("access: %s: %s: from an incoming relay, but no original client in its Received "
                         "field; checked as the relay", env.client_ip, env.txid)
        return CONTINUE
    arrival.log.info("access: %s: %s: from an incoming relay; checked as its client %s", env.client_ip,
                     env.txid, origin)
    env.peer_ip, env.client_ip = env.client_ip, origin
    env.spf = None            # an SPF result found at RCPT (greylisting) was the relay's
    return CONTINUE
