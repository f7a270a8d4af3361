"""Who may connect to which listener: a manual ban (`mailctl ban add`, every listener)
and the allow/deny entries of `mailctl access` (per listener). Asked once per connection,
before the greeting, by SMTP (engine/smtp/admission.py) and IMAP/POP3 (engine/connlimits.py).

Of the active allow and deny entries that hold the client and apply to the listener, the
narrowest network decides (a tie goes to deny): 'deny 0.0.0.0/0' with 'allow
192.168.0.0/16' opens a listener to the LAN alone; an allow entry on its own changes
nothing. A client denied gets a permanent refusal in its protocol's words and is closed:
SMTP 554 5.7.1 as its greeting (RFC 5321 §3.1), IMAP a BYE greeting, POP3 -ERR.
"""
from __future__ import annotations

from .entries import NETWORK_KINDS
from .patterns import network_of, parse_ip

DENIED = "denied"                         # engine.connlimits' name for this refusal
TEXTS = {                                 # protocol -> what a denied client is told
    "imap": "[CONTACTADMIN] Connections from your address are not accepted",
    "pop3": "[SYS/PERM] Connections from your address are not accepted",
}


def refusal(rt, ip: str, listener: str) -> str | None:
    """Why this client may not connect to this listener (for the log), or None.
    Blocking (a stat of the ban and access files): SMTP calls it on the loop as it
    did the ban check before it; IMAP/POP3 in a worker thread."""
    if rt.bans.is_manually_banned(ip):
        return "banned by the administrator (mailctl ban)"
    entries = rt.access.active(NETWORK_KINDS)
    if not entries:
        return None                            # the usual case: nothing to parse
    addr = parse_ip(ip)
    if addr is None:
        return None
    holding = [(net, e) for e in entries if not e.listeners or listener in e.listeners
               for net in (network_of(e.value),) if net.version == addr.version and addr in net]
    if not holding:
        return None
    narrowest = max(net.prefixlen for net, _ in holding)
    deny = next((e for net, e in holding if net.prefixlen == narrowest and e.kind == "deny"), None)
    if deny is None:
        return None
    return f"access entry deny {deny.value}" + (f" ({deny.reason})" if deny.reason else "")


def refuse(rt, ip: str, listener: str) -> str | None:
    """refusal(), logged and counted when it refuses."""
    why = refusal(rt, ip, listener)
    if why is not None:
        rt.log.info("access: %s refused on %s: %s", ip, listener, why)
        rt.count("access_refused_connect")
    return why
