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

from .patterns import parse_ip

DENIED = "denied"                         # engine.connlimits' name for this refusal
TEXTS = {                                 # protocol -> what a denied client is told
    "imap": "[CONTACTADMIN] Connections from your address are not accepted",
    "pop3": "[SYS/PERM] Connections from your address are not accepted",
    "managesieve": "Connections from your address are not accepted",
}


def refusal(rt, ip: str, listener: str) -> str | None:
    """Why this client may not connect to this listener (for the log), or None.
    Blocking (a stat of the ban and access files): SMTP calls it on the loop as it
    did the ban check before it; IMAP/POP3 in a worker thread."""
    if rt.bans.is_manually_banned(ip):
        return "banned by the administrator (mailctl ban)"
    index = rt.access.by_network()
    if not index:
        return None                            # the usual case: no entry at all
    addr = parse_ip(ip)
    if addr is None:
        return None
    holding = _holding(index, addr, listener, rt.access.clock())
    if not holding:
        return None
    narrowest = max(plen for plen, _ in holding)
    deny = next((e for plen, e in holding if plen == narrowest and e.kind == "deny"), None)
    if deny is None:
        return None
    return f"access entry deny {deny.value}" + (f" ({deny.reason})" if deny.reason else "")


def _holding(index: dict, addr, listener: str, now: float) -> list[tuple[int, object]]:
    """(prefix length, entry) of every active entry for this listener whose network holds addr."""
    bits, value = addr.max_prefixlen, int(addr)
    out = []
    for (version, plen), table in index.items():
        if version == addr.version:
            for e in table.get(value >> (bits - plen) << (bits - plen), ()):
                if e.active(now) and (not e.listeners or listener in e.listeners):
                    out.append((plen, e))
    return out


def refuse(rt, ip: str, listener: str) -> str | None:
    """refusal(), logged and counted when it refuses."""
    why = refusal(rt, ip, listener)
    if why is not None:
        rt.log.info("access: %s refused on %s: %s", ip, listener, why)
        rt.count("access_refused_connect")
    return why
