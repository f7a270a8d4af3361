"""The ManageSieve listener: `start(runtime, name, listener_settings)` for engine.service."""
from __future__ import annotations

import asyncio

from .. import connection
from .session import MANAGESIEVE, SieveSession
from .words import MAX_LINE


async def start(runtime, name: str, listener_settings) -> list[asyncio.base_events.Server]:
    """Listen on every bind address (STARTTLS, or implicit TLS when the settings say so)."""
    return await connection.listen(runtime, name, listener_settings, SieveSession, MANAGESIEVE, MAX_LINE + 2)
