"""One request and its whole answer over a unix or TCP socket, every step within one
deadline: the spam scanners' protocols (spamd's spamc protocol, rspamd's HTTP) both send a
request and read until the scanner closes the connection."""
from __future__ import annotations

import socket
import time

from .clamd import parse_address
from .verdict import ScanFailed


def exchange(name: str, address: str, request: bytes, timeout: float, max_reply: int) -> bytes:
    """Send request, read the answer up to the connection's end (at most max_reply bytes).
    Raises ScanFailed (naming the scanner, never the address: it may reach a log only) when
    the scanner is down, hangs past timeout or talks too much."""
    deadline = time.monotonic() + timeout
    family, where = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)

    def arm() -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        sock.settimeout(left)

    try:
        arm()
        sock.connect(where)
        view = memoryview(request)
        for at in range(0, len(view), 256 * 1024):
            arm()
            sock.sendall(view[at:at + 256 * 1024])
        got = bytearray()
        while True:
            arm()
            piece = sock.recv(65536)
            if not piece:
                return bytes(got)
            got += piece
            if len(got) > max_reply:
                raise ScanFailed(f"{name}: its answer is too long")
    except socket.timeout:
        raise ScanFailed(f"{name}: no answer within {timeout:g} s") from None
    except OSError as e:
        raise ScanFailed(f"{name}: {e.strerror or type(e).__name__}") from None
    finally:
        sock.close()
