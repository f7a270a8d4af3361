"""A client of clamd (ClamAV's daemon) over its unix or TCP socket.

    found = scan("/run/clamav/clamd.ctl", pieces, timeout=30)     # zINSTREAM
    ping("127.0.0.1:3310", timeout=2)                              # zPING -> "PONG"

INSTREAM (clamd(8)): the command, then chunks each led by its length as 4 bytes in network
order, then a zero length; clamd answers one line ("stream: OK", "stream: NAME FOUND",
"... ERROR") ended by NUL (the "z" commands). Every step has the same deadline, so a
clamd that hangs costs at most `timeout` seconds.
"""
from __future__ import annotations

import re
import socket
import struct
import time

from .verdict import Found, ScanFailed, virus_name

CHUNK = 64 * 1024            # well under clamd's StreamMaxLength (25 MB by default)
MAX_REPLY = 4096             # a longer reply is not clamd's
ENGINE = "ClamAV"

_FOUND = re.compile(r"(?:\d+: )?stream: (.+) FOUND\Z")
_OK = re.compile(r"(?:\d+: )?stream: OK\Z")


def parse_address(address: str) -> tuple[int, object]:
    """(socket family, address) of '/path/to/clamd.ctl', 'host:port' or '[v6]:port'."""
    if address.startswith("/"):
        return socket.AF_UNIX, address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or not host:
        raise ValueError(f"{address!r} is not a unix socket path or host:port")
    if host.startswith("[") and host.endswith("]"):
        return socket.AF_INET6, (host[1:-1], int(port))
    return socket.AF_INET if ":" not in host else socket.AF_INET6, (host, int(port))


def parse_reply(raw: bytes) -> Found:
    """clamd's answer to INSTREAM: Found (clean or the virus's name), else ScanFailed for an
    error line or anything that is not clamd's answer."""
    text = raw.rstrip(b"\0").rstrip(b"\r\n").decode("ascii", "replace")
    if _OK.match(text):
        return Found(engine=ENGINE)
    m = _FOUND.match(text)
    if m:
        name = virus_name(m.group(1))
        if name is not None:
            return Found(name, ENGINE)
    if text.endswith(" ERROR") and virus_name(text):
        raise ScanFailed(f"clamd: {text}")
    raise ScanFailed(f"clamd answered something else than a verdict ({len(raw)} bytes)")


class _Connection:
    """One command to clamd, every step within the deadline."""

    def __init__(self, address: str, timeout: float):
        self.deadline = time.monotonic() + timeout
        family, where = parse_address(address)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._arm()
            self.sock.connect(where)
        except OSError as e:
            self.sock.close()
            raise ScanFailed(f"clamd at {address}: {_why(e)}") from None

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)

    def send(self, data: bytes) -> None:
        self._arm()
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """Up to the NUL that ends a z-command's answer (or the connection's end)."""
        got = b""
        while b"\0" not in got:
            self._arm()
            piece = self.sock.recv(MAX_REPLY)
            if not piece:
                break
            got += piece
            if len(got) > MAX_REPLY:
                raise ScanFailed("clamd's answer is too long")
        return got.split(b"\0", 1)[0]

    def close(self) -> None:
        self.sock.close()


def scan(address: str, pieces, timeout: float) -> Found:
    """Stream the message (an iterable of bytes) to clamd with zINSTREAM."""
    conn = _Connection(address, timeout)
    try:
        try:
            conn.send(b"zINSTREAM\0")
            for piece in pieces:
                view = memoryview(piece)
                for at in range(0, len(view), CHUNK):
                    chunk = view[at:at + CHUNK]
                    conn.send(struct.pack("!I", len(chunk)) + bytes(chunk))
            conn.send(b"\0\0\0\0")
        except (BrokenPipeError, ConnectionResetError):
            pass                  # clamd stopped reading (its size limit): its answer says why
        return parse_reply(conn.reply())
    except socket.timeout:
        raise ScanFailed(f"clamd at {address}: no answer within {timeout:g} s") from None
    except OSError as e:
        raise ScanFailed(f"clamd at {address}: {_why(e)}") from None
    finally:
        conn.close()


def ping(address: str, timeout: float = 2.0) -> str | None:
    """clamd's version when it answers PING with PONG, else None."""
    try:
        conn = _Connection(address, timeout)
    except (ScanFailed, ValueError):
        return None
    try:
        conn.send(b"zPING\0")
        if conn.reply() != b"PONG":
            return None
    except (OSError, ScanFailed):
        return None
    finally:
        conn.close()
    try:
        conn = _Connection(address, timeout)
        try:
            conn.send(b"zVERSION\0")
            version = conn.reply().decode("ascii", "replace").split("/", 1)[0]
        finally:
            conn.close()
    except (OSError, ScanFailed):
        version = ""
    return virus_name(version) or ENGINE


def _why(e: OSError) -> str:
    return "timed out" if isinstance(e, socket.timeout) else (e.strerror or type(e).__name__)
