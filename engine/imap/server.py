"""The IMAP listeners: `start(runtime, name, listener_settings)` for engine.service."""
from __future__ import annotations

import asyncio

from .session import MAX_LINE, ImapSession


async def start(runtime, name: str, listener_settings) -> list[asyncio.base_events.Server]:
    """One server per bind address; implicit TLS when listener_settings.tls says so."""
    tls_mode = listener_settings.tls
    ssl_ctx = runtime.ssl_context() if tls_mode == "implicit" else None

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ImapSession(runtime, name, reader, writer, tls_mode).run()

    servers = []
    for host in listener_settings.bind:
        servers.append(await asyncio.start_server(
            client, host, listener_settings.port, ssl=ssl_ctx, limit=MAX_LINE + 2,
            reuse_address=True, ssl_handshake_timeout=30 if ssl_ctx else None))
    return servers
