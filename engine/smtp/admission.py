"""Letting an SMTP client in: the connection limits (421 before the greeting), the
pregreet test on port 25, and the idle time allowed (shorter under stress).

Pregreet, as Postfix's postscreen: port 25 waits limits.pregreet_wait_s before its
greeting; real MTAs wait for it (RFC 5321 §4.3.1), while many spam bots talk at once.
Such a client gets 554 5.5.1, is disconnected, logged, and counted toward a ban.
"""
from __future__ import annotations

import asyncio

from .. import overload
from ..access import gate
from ..connlimits import near
from . import replies

SMTP_PROTOCOLS = ("smtp", "submission", "submissions")


def refusal(rt, ip: str, listener: str = "smtp") -> str | None:
    """Reasons to refuse a new connection before the greeting: 554 for a client the access
    lists deny (engine/access/gate.py), else 421. The connection is already counted, so
    those opened at once in several processes see each other."""
    limits = rt.settings.limits
    if rt.stopping.is_set():
        return replies.SHUTTING_DOWN
    try:
        if gate.refuse(rt, ip, listener):
            return replies.ACCESS_DENIED
        if rt.bans.is_banned(ip):
            return replies.BANNED
    except OSError as e:            # the ban files cannot even be opened: out of descriptors
        if not overload.out_of_fds(e):
            raise
        return replies.OUT_OF_RESOURCES
    if limits.max_connections and rt.sessions.count(SMTP_PROTOCOLS) > limits.max_connections:
        return replies.TOO_MANY_CONNECTIONS
    if limits.max_connections_per_ip and \
            rt.sessions.count(SMTP_PROTOCOLS, ip) > limits.max_connections_per_ip:
        return replies.TOO_MANY_CONNECTIONS_FROM_IP
    return None


async def talks_first(rt, listener: str, reader: asyncio.StreamReader) -> bool:
    """On port 25, wait the pregreet time; True when the client sent something meanwhile."""
    if listener != "smtp" or not rt.settings.limits.pregreet_wait_s:
        return False
    await asyncio.sleep(rt.settings.limits.pregreet_wait_s)
    return talked(reader)


def talked(reader: asyncio.StreamReader) -> bool:
    """Whether the client sent anything yet (a look at the buffer: what came stays there;
    EOF alone, a port scan, is no pregreet)."""
    return bool(reader._buffer)      # noqa: SLF001 - as MailSMTP._may_hold


async def count_pregreet(rt, ip: str) -> None:
    rt.log.warning("smtp: %s refused: talked before the greeting (pregreet)", ip)
    await rt.run_blocking(rt.bans.record_failure, ip, "smtp-pregreet")


_counting: set[asyncio.Task] = set()      # held, so a task is not collected before it ends


def count_pregreet_soon(rt, ip: str) -> None:
    """count_pregreet from a callback that cannot wait (the client is gone)."""
    task = asyncio.ensure_future(count_pregreet(rt, ip))
    _counting.add(task)
    task.add_done_callback(_counting.discard)


def idle_limit(rt, ip: str) -> float:
    """Idle time allowed between commands: limits.stress_timeout_s when SMTP is near its
    connection limits (all of them, or this address's), else limits.command_timeout_s."""
    limits = rt.settings.limits
    # a limit of 0 (none) is never near: no count for it (each walks the shared counts)
    if ((limits.max_connections and near(rt.sessions.count(SMTP_PROTOCOLS), limits.max_connections))
            or (limits.max_connections_per_ip
                and near(rt.sessions.count(SMTP_PROTOCOLS, ip), limits.max_connections_per_ip))):
        return min(limits.stress_timeout_s, limits.command_timeout_s)
    return limits.command_timeout_s
