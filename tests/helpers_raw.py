"""A bare line client, to send IMAP, SMTP or POP3 input that no library would."""
from __future__ import annotations

import socket
import zlib

from helpers_mail import PASSWORD


class Raw:
    """A bare socket client, to send what no library would."""

    def __init__(self, port: int, timeout: float = 10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.deflate = None             # (compressor, decompressor) once compress() ran
        self.wire_in = self.wire_out = 0   # bytes received and sent on the socket
        self.greeting = self.line()

    def compress(self, tag: bytes = b"z") -> bytes:
        """IMAP COMPRESS DEFLATE (RFC 4978); from its OK on, raw DEFLATE both ways."""
        reply = self.cmd(b"COMPRESS DEFLATE", tag)
        if reply.startswith(tag + b" OK"):
            self.deflate = (zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15))
            if self.buf:                # already read past the OK: compressed bytes
                self.buf = self.deflate[1].decompress(self.buf)
        return reply

    def send(self, data: bytes) -> None:
        if self.deflate is not None:
            z = self.deflate[0]
            data = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
        self.wire_out += len(data)
        self.sock.sendall(data)

    def recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.wire_in += len(chunk)
        return self.deflate[1].decompress(chunk) if self.deflate is not None else chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.buf += self.recv()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def until_tag(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def cmd(self, text: bytes, tag: bytes = b"t1") -> bytes:
        self.send(tag + b" " + text + b"\r\n")
        return self.until_tag(tag)[-1]

    def login(self, address: str) -> None:
        assert self.cmd(f'LOGIN {address} "{PASSWORD}"'.encode()).startswith(b"t1 OK")

    def close(self) -> None:
        self.sock.close()
