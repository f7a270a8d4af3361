"""The IMAP listeners: `start(runtime, name, listener_settings)` for engine.service."""
from __future__ import annotations

import asyncio

from .. import overload
from .session import MAX_LINE, ImapSession


def stream_factory(client, limit: int):
    """A protocol factory for runtime.listen that hands each connection to `client`
    as a (StreamReader, StreamWriter) pair, as asyncio.start_server does."""
    def factory():
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client, loop=loop)
    return factory


async def start(runtime, name: str, listener_settings) -> list[asyncio.base_events.Server]:
    """Listen on every bind address; implicit TLS when listener_settings.tls says so."""
    tls_mode = listener_settings.tls
    ssl_ctx = runtime.ssl_context() if tls_mode == "implicit" else None

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ImapSession(runtime, name, reader, writer, tls_mode).run()

    return await runtime.listen(name, stream_factory(client, MAX_LINE + 2), listener_settings, ssl=ssl_ctx,
                                busy_reply=overload.BUSY_IMAP)
