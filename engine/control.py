"""The control socket run/control.sock: how `mailctl status|reload|stop|who` and workers
talk to a running server.

Protocol: the client sends one JSON line {"command": name, "args": {...}}; the server
answers one JSON line {"ok": true, ...} or {"ok": false, "error": "..."}.
Handlers are registered by name: `register("status", async fn(runtime, **args) -> dict)`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Awaitable, Callable

from . import unixsocket
from .errors import MailError
from .root import Root

SOCKET_NAME = "control.sock"
MAX_REQUEST = 64 * 1024

Handler = Callable[..., Awaitable[dict]]
HANDLERS: dict[str, Handler] = {}


class NotRunning(MailError):
    pass


def register(name: str, fn: Handler) -> None:
    HANDLERS[name] = fn


def socket_path(root: Root, slot: int = 0) -> Path:
    """The supervisor's socket (slot 0), or a serving process's own (slot 1..N)."""
    return root.run_dir / (SOCKET_NAME if slot == 0 else f"control.{slot}.sock")


def request(root: Root, command: str, timeout: float = 10.0, **args) -> dict:
    """Send one command to the running server; raise NotRunning when none answers."""
    path = socket_path(root)
    if not path.exists():
        raise NotRunning(f"mailctl is not running on {root.path} (no run/{SOCKET_NAME}); "
                         f"start it with 'mailctl start'")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            with unixsocket.address(path) as where:
                sock.connect(where)
        except (ConnectionRefusedError, FileNotFoundError):
            raise NotRunning(f"mailctl is not running on {root.path} (stale run/{SOCKET_NAME}); "
                             f"start it with 'mailctl start'") from None
        sock.sendall(_request_line(command, args))
        data = read_reply_line(sock)
    except socket.timeout:
        raise MailError(f"the server did not answer {command!r} within {timeout:g}s; "
                        f"see {root.log_dir}/mailctl.log") from None
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except ValueError:
        raise MailError(f"the server gave no valid answer to {command!r}; see {root.log_dir}/mailctl.log") from None
    return _checked(reply, command)


def read_reply_line(sock: socket.socket) -> bytes:
    """A local socket's one-line JSON reply: bytes up to the newline, or to the server's close."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _request_line(command: str, args: dict) -> bytes:
    return json.dumps({"command": command, "args": args}).encode() + b"\n"


def _checked(reply: dict, command: str) -> dict:
    if not reply.get("ok"):
        raise MailError(reply.get("error") or f"{command} failed")
    return reply


async def ask(path: Path, command: str, timeout: float = 5.0, **args) -> dict:
    """request() from inside an event loop, to a given socket (the supervisor asking a serving process)."""
    async def exchange() -> dict:
        with unixsocket.address(path) as where:
            reader, writer = await asyncio.open_unix_connection(where)
        try:
            writer.write(_request_line(command, args))
            reply = json.loads(await reader.readline())
        finally:
            writer.close()
        return _checked(reply, command)
    return await asyncio.wait_for(exchange(), timeout)


async def serve(runtime, path: Path | None = None) -> asyncio.AbstractServer:
    """Listen on run/control.sock, or path (replacing a stale socket of a dead server)."""
    path = path or socket_path(runtime.root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            try:
                req = json.loads(line[:MAX_REQUEST])
                command, args = req["command"], dict(req.get("args") or {})
            except (ValueError, KeyError, TypeError):
                reply = {"ok": False, "error": "bad request: send one JSON line {\"command\": ...}"}
            else:
                handler = HANDLERS.get(command)
                if handler is None:
                    reply = {"ok": False, "error": f"unknown command {command!r} "
                                                  f"(known: {', '.join(sorted(HANDLERS))})"}
                else:
                    try:
                        reply = {"ok": True, **(await handler(runtime, **args))}
                    except MailError as e:
                        reply = {"ok": False, "error": str(e)}
                    except Exception as e:       # a bug must not kill the control socket
                        runtime.log.exception("control: %s failed", command)
                        reply = {"ok": False, "error": f"{command} failed: {e.__class__.__name__}: {e}"}
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    old = os.umask(0o077)       # only the owner may control the server
    try:
        with unixsocket.address(path) as where:
            server = await asyncio.start_unix_server(client, path=where)
    finally:
        os.umask(old)
    return server
