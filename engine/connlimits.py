"""Connection limits shared by the IMAP and POP3 listeners, and "stress" (a server near
its limits) for shorter idle times, as Postfix's stress-dependent timeouts.

IMAP and POP3 share mailbox.max_sessions. Within it, no one address may hold more than
mailbox.max_connections_per_ip connections that have not logged in, nor one user more
than mailbox.max_userip_connections from one address (Dovecot's
mail_max_userip_connections), so no single address can take the whole global limit.
All counts are across serving processes (engine.sharedcounts).
"""
from __future__ import annotations

from .access import gate

MAIL_PROTOCOLS = ("imap", "pop3", "managesieve")
STRESS_SHARE = 0.8            # over this share of a limit the server is under stress

BANNED, FULL, ADDRESS_FULL = "banned", "full", "address"
DENIED = gate.DENIED


def before_open(rt, ip: str, listener: str = "") -> str | None:
    """Refuse before counting the connection: DENIED (the access lists, a manual ban),
    BANNED or FULL (the global limit)."""
    if gate.refuse(rt, ip, listener):
        return DENIED
    if rt.bans.is_banned(ip):
        return BANNED
    limit = rt.settings.mailbox.max_sessions
    if limit and rt.sessions.count(MAIL_PROTOCOLS) >= limit:
        return FULL
    return None


def after_open(rt, ip: str) -> str | None:
    """Once counted (so connections opened at once in several processes see each other):
    ADDRESS_FULL when the address has too many connections not logged in."""
    limit = rt.settings.mailbox.max_connections_per_ip
    if limit and rt.sessions.count_at(MAIL_PROTOCOLS, ip) > limit:
        return ADDRESS_FULL
    return None


def user_ip_full(rt, user: str, ip: str) -> str | None:
    """The refusal text when `user` already has the most connections allowed from `ip`."""
    limit = rt.settings.mailbox.max_userip_connections
    if limit and rt.sessions.count_at(MAIL_PROTOCOLS, ip, user) >= limit:
        return f"Maximum number of connections from user+IP exceeded (mail_max_userip_connections={limit})"
    return None


def near(count: int, limit: int) -> bool:
    return bool(limit) and count > limit * STRESS_SHARE


def login_timeout(rt, ip: str) -> float:
    """Time allowed before login: shorter when IMAP/POP3 is near its limits."""
    s = rt.settings.mailbox
    stressed = (near(rt.sessions.count(MAIL_PROTOCOLS), s.max_sessions)
                or near(rt.sessions.count_at(MAIL_PROTOCOLS, ip), s.max_connections_per_ip))
    return min(s.stress_login_timeout_s, s.login_timeout_s) if stressed else s.login_timeout_s
