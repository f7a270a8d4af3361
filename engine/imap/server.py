"""The IMAP listeners: `start(runtime, name, listener_settings)` for engine.service."""
from __future__ import annotations

import asyncio

from .. import connection
from .session import IMAP, MAX_LINE, ImapSession


async def start(runtime, name: str, listener_settings) -> list[asyncio.base_events.Server]:
    """Listen on every bind address; implicit TLS when listener_settings.tls says so."""
    return await connection.listen(runtime, name, listener_settings, ImapSession, IMAP, MAX_LINE + 2)
