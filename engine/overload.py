"""A serving process out of file descriptors (EMFILE, ENFILE) under a connection flood.

asyncio meets it in its accept loop by passing the error to the loop's exception handler
(which would log a traceback) and pausing that listener for a second; meanwhile the new
clients wait in the backlog and hear nothing. As busy servers commonly do, this keeps one
descriptor in reserve: when accept() fails for want of descriptors, the reserve is let go,
the waiting connections are taken one at a time, told in their protocol's words to come
back later, and closed; then the reserve is taken again. asyncio's pause-and-retry stays as
it is, so the listener never spins, and it serves normally again once descriptors are free.
"""
from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
import time

OUT_OF_FDS = (errno.EMFILE, errno.ENFILE)
LOG_EVERY_S = 10.0

# What a refused client is told, per protocol (an implicit-TLS listener just closes).
TRY_LATER = "Server is out of resources, try again later"
BUSY_IMAP = f"* BYE [UNAVAILABLE] {TRY_LATER}\r\n".encode()
BUSY_POP3 = f"-ERR [SYS/TEMP] {TRY_LATER}\r\n".encode()
BUSY_MANAGESIEVE = f'BYE (TRYLATER) "{TRY_LATER}"\r\n'.encode()


def out_of_fds(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in OUT_OF_FDS


class FdReserve:
    """The reserve descriptor of one event loop and the goodbye of each listening socket."""

    def __init__(self, loop, log):
        self.log = log
        self.replies: dict[int, bytes] = {}     # listening fd -> what a refused client hears
        self.fd: int | None = None
        self.refused = 0                        # since the last log line
        self.logged_at = 0.0
        self._previous = loop.get_exception_handler()
        self._take()
        loop.set_exception_handler(self._handle)

    def watch(self, sock, reply: bytes) -> None:
        self.replies[sock.fileno()] = reply

    def _take(self) -> None:
        if self.fd is None:
            with contextlib.suppress(OSError):       # no descriptor free now: next time
                self.fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def _release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _handle(self, loop, context: dict) -> None:
        sock = context.get("socket")
        if sock is None or not out_of_fds(context.get("exception")) or sock.fileno() not in self.replies:
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.refused += self.refuse_waiting(sock.fileno())
        now = time.monotonic()
        if now - self.logged_at >= LOG_EVERY_S:
            self.logged_at = now
            self.log.warning("out of file descriptors (open files limit %d): new connections are told "
                             "to try again later (%d in the last %g s); raise the limit (ulimit -n, "
                             "LimitNOFILE) or lower the connection limits",
                             resource.getrlimit(resource.RLIMIT_NOFILE)[0], self.refused, LOG_EVERY_S)
            self.refused = 0

    def refuse_waiting(self, fd: int) -> int:
        """Take every connection waiting on the listening socket `fd`, answer and close it."""
        reply = self.replies.get(fd, b"")
        listener = socket.socket(fileno=fd)        # the same socket, no new descriptor
        count = 0
        try:
            self._release()
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:                    # none waiting, or no descriptor even now
                    break
                with conn:
                    conn.setblocking(False)
                    with contextlib.suppress(OSError):
                        if reply:
                            conn.send(reply)
                count += 1
        finally:
            listener.detach()                      # asyncio's socket: never closed here
            self._take()
        return count

