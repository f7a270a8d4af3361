"""A bare line client, to send IMAP, SMTP or POP3 input that no library would."""
from __future__ import annotations

import socket

from helpers_mail import PASSWORD


class Raw:
    """A bare socket client, to send what no library would."""

    def __init__(self, port: int, timeout: float = 10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
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
