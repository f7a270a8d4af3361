"""The runner's pacing of outbound connections: idle connections kept per destination
and reused for the next message to it, and the limit on messages started per minute."""
from __future__ import annotations

import asyncio
import time

from .client import Connection

IDLE_CONNECTION_SECONDS = 5.0
MAX_TRANSACTIONS_PER_CONNECTION = 100


class ConnectionPool:
    """Idle connections per (ip, port, tls, user), reused for the next message."""

    def __init__(self):
        self.idle: dict[tuple, list[tuple[Connection, float]]] = {}
        self.closing: set[asyncio.Future] = set()     # held so a closing connection is not collected mid-QUIT

    def get(self, key) -> Connection | None:
        items = self.idle.get(key)
        while items:
            conn, since = items.pop()
            if not conn.closed and time.monotonic() - since < IDLE_CONNECTION_SECONDS:
                return conn
            self.closing.add(asyncio.ensure_future(conn.close()))
            self.closing = {t for t in self.closing if not t.done()}
        return None

    def put(self, key, conn: Connection) -> None:
        if conn.closed or conn.transactions >= MAX_TRANSACTIONS_PER_CONNECTION:
            self.closing.add(asyncio.ensure_future(conn.quit()))
            self.closing = {t for t in self.closing if not t.done()}
            return
        self.idle.setdefault(key, []).append((conn, time.monotonic()))

    async def prune(self, everything: bool = False) -> None:
        now = time.monotonic()
        for key, items in list(self.idle.items()):
            keep = []
            for conn, since in items:
                if everything or conn.closed or now - since >= IDLE_CONNECTION_SECONDS:
                    await conn.quit()
                else:
                    keep.append((conn, since))
            self.idle[key] = keep


class RateLimit:
    """At most n starts per minute, evenly spaced (0 = no limit)."""

    def __init__(self):
        self.next_slot = 0.0

    async def wait(self, per_minute: int) -> None:
        if per_minute <= 0:
            return
        now = time.monotonic()
        slot = max(now, self.next_slot)
        self.next_slot = slot + 60.0 / per_minute
        if slot > now:
            await asyncio.sleep(slot - now)
