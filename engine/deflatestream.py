"""A connection's byte stream compressed with raw DEFLATE (RFC 1951, zlib wbits=-15), as
IMAP's COMPRESS=DEFLATE (RFC 4978) wants it: the session's reader and writer are replaced
by these two, which stand on the originals (and so on TLS when it is active).

    reader, writer = wrap(reader, writer, line_limit)

The writer compresses each write and ends it with a sync flush: every response batch the
session sends (engine.replybatch) reaches the client whole. The reader inflates what the
session asks for and no more (at most INFLATE_STEP bytes ahead), so a small input that
inflates to gigabytes costs memory only as far as the session reads; a stream that keeps
inflating far beyond any mail (MAX_RATIO) or is not DEFLATE at all ends the connection
(DeflateError, a ConnectionError: the session ends without a word, as when the client
leaves). A session that never sends COMPRESS never meets this module.
"""
from __future__ import annotations

import asyncio
import zlib

INFLATE_STEP = 64 * 1024           # bytes inflated per step, at most
READ_SIZE = 64 * 1024              # compressed bytes read from the connection at a time
LEVEL = 6                          # as Dovecot's imap_compress_deflate_level
# A stream that has inflated past BOMB_FLOOR at more than MAX_RATIO times its compressed
# size is a decompression bomb: DEFLATE's best is about 1032:1, mail never comes close.
MAX_RATIO = 500
BOMB_FLOOR = 64 * 1024 * 1024


class DeflateError(ConnectionError):
    """The client's compressed stream is broken or hostile: the connection ends."""


class InflatingReader:
    """The part of asyncio.StreamReader a session reads with (readuntil, readexactly,
    read, at_eof), over a raw DEFLATE stream read from `raw`."""

    def __init__(self, raw: asyncio.StreamReader, limit: int):
        self.raw = raw
        self.limit = limit
        self._buffer = bytearray()
        self._z = zlib.decompressobj(-15)
        self._eof = False
        self.compressed = 0            # bytes read from the connection
        self.inflated = 0              # bytes they inflated to

    async def _fill(self) -> bool:
        """Inflate at least one more byte into the buffer; False at the end of the stream."""
        z = self._z
        while True:
            if self._eof:
                return False
            tail = z.unconsumed_tail
            if not tail:
                if z.eof:          # the client ended its DEFLATE stream: nothing may follow
                    raise DeflateError("the compressed stream was ended")
                tail = await self.raw.read(READ_SIZE)
                if not tail:
                    self._eof = True
                    return False
                self.compressed += len(tail)
            try:
                data = z.decompress(tail, INFLATE_STEP)
            except zlib.error as e:
                raise DeflateError(f"not a DEFLATE stream: {e}") from None
            if data:
                self.inflated += len(data)
                if self.inflated > BOMB_FLOOR and self.inflated > MAX_RATIO * self.compressed:
                    raise DeflateError("the compressed stream inflates beyond any mail")
                self._buffer += data
                return True

    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        start = 0
        while True:
            i = self._buffer.find(separator, start)
            if i >= 0:
                end = i + len(separator)
                if end > self.limit:
                    raise asyncio.LimitOverrunError("Separator is found, but chunk is longer than limit", i)
                out = bytes(self._buffer[:end])
                del self._buffer[:end]
                return out
            if len(self._buffer) > self.limit:
                raise asyncio.LimitOverrunError("Separator is not found, and chunk exceed the limit",
                                                len(self._buffer))
            start = max(0, len(self._buffer) - len(separator) + 1)
            if not await self._fill():
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, None)

    async def readexactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not await self._fill():
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, n)
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    async def read(self, n: int = -1) -> bytes:
        if not self._buffer and not await self._fill():
            return b""
        if n < 0:
            n = len(self._buffer)
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


class DeflatingWriter:
    """The part of asyncio.StreamWriter a session writes with, compressing each write."""

    def __init__(self, raw: asyncio.StreamWriter, level: int = LEVEL):
        self.raw = raw
        self._z = zlib.compressobj(level, zlib.DEFLATED, -15)
        self.plain = 0                 # bytes given to write()
        self.sent = 0                  # bytes they became on the wire

    def write(self, data: bytes) -> None:
        out = self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        self.plain += len(data)
        self.sent += len(out)
        self.raw.write(out)

    async def drain(self) -> None:
        await self.raw.drain()

    def close(self) -> None:
        self.raw.close()

    def is_closing(self) -> bool:
        return self.raw.is_closing()

    def get_extra_info(self, name: str, default=None):
        return self.raw.get_extra_info(name, default)

    async def wait_closed(self) -> None:
        await self.raw.wait_closed()


def wrap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int
         ) -> tuple[InflatingReader, DeflatingWriter]:
    return InflatingReader(reader, limit), DeflatingWriter(writer)


def is_compressed(writer) -> bool:
    return isinstance(writer, DeflatingWriter)
