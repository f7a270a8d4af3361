"""The POP3 listeners: `start(runtime, name, listener_settings)` for engine.service."""
from __future__ import annotations

import asyncio

from .. import connection
from .session import POP3, Pop3Session

LINE_LIMIT = 4096       # the stream's buffer; a longer line is skipped by Pop3Session.readline


async def start(runtime, name: str, listener_settings) -> list[asyncio.base_events.Server]:
    """Listen on every bind address; implicit TLS when listener_settings.tls says so."""
    return await connection.listen(runtime, name, listener_settings, Pop3Session, POP3, LINE_LIMIT)
