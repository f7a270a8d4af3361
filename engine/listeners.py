"""Listening sockets: bound once per server and handed to every serving process.

The supervisor binds them (as root it may take ports below 1024) and passes them to its
serving processes, which all accept from the same queue: a serving process that dies
leaves the connections waiting there to the others or to its replacement.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket

from .errors import MailError

log = logging.getLogger("mailctl")
BACKLOG = 512


def _bind_one(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:          # "::" and "0.0.0.0" on one port side by side
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind(name: str, listener) -> list[socket.socket]:
    """A socket on every address of listener.bind. Port 0 takes a free port, the same one
    on every address. A missing IPv6 stack skips its address with a log line."""
    socks: list[socket.socket] = []
    port = listener.port
    for host in listener.bind:
        try:
            sock = _bind_one(host, port)
        except OSError as e:
            if ":" in host and len(listener.bind) > 1:     # no IPv6 on this host
                log.warning("listeners.%s: not listening on %s: %s", name, host, e.strerror)
                continue
            close(socks)
            holder = holder_of(port) if e.errno == errno.EADDRINUSE else ""
            raise MailError(f"listeners.{name}: cannot listen on {host} port {port}: {e.strerror}"
                            f"{f' (held by {holder})' if holder else ''}; "
                            f"change listeners.{name}.port or .bind in mailctl.toml") from None
        if port == 0:
            port = sock.getsockname()[1]
        socks.append(sock)
    return socks


def holder_of(port: int) -> str:
    """Which process listens on a TCP port ('pid N: command'), from /proc: the socket's
    inode in /proc/net/tcp{,6}, then the process holding that inode. '' when unknown."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in open(table).read().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:    # LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return ""
    for proc in os.listdir("/proc"):
        if not proc.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{proc}/fd"):
                if os.readlink(f"/proc/{proc}/fd/{fd}") in inodes:
                    cmd = open(f"/proc/{proc}/cmdline", "rb").read().replace(b"\0", b" ").strip()
                    shown = cmd.decode("utf-8", "replace")
                    return f"pid {proc}: {shown[:200]}"
    return ""


def bind_all(settings, names) -> dict[str, list[socket.socket]]:
    """Every enabled listener among names; on a failure nothing stays bound."""
    bound: dict[str, list[socket.socket]] = {}
    try:
        for name in names:
            ls = getattr(settings.listeners, name, None)
            if ls is not None and ls.enabled:
                bound[name] = bind(name, ls)
    except BaseException:
        for socks in bound.values():
            close(socks)
        raise
    return bound


def addresses(socks: list[socket.socket]) -> list[tuple[str, int]]:
    return [sock.getsockname()[:2] for sock in socks]


def close(socks) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()
