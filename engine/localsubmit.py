"""sendmail(1) for every local user: submission over the local socket run/submit.sock.

A user who cannot read the mail root (a cron job, PHP's mail() as www-data, a daemon)
hands the message to the running server, which knows who the caller is from the socket's
peer credentials (SO_PEERCRED: the kernel says the uid; nothing the client sends can
change it), as Postfix's postdrop/pickup pair does.

Protocol, one request per connection:
  client: one JSON line {"sender": str|null, "recipients": [str], "extract": bool},
          then the message bytes, then it shuts down its writing side;
  server: one JSON line {"ok": true, "sender", "delivered", "queued", "rejected", "warnings"}
          or {"ok": false, "error": "...", "temporary": bool}.

The envelope sender is the caller's mapped address, <login>@sendmail.sender_domain. Another
sender (-f) is allowed only for trusted users (root, the server's own user and
sendmail.trusted_users) or for the addresses sendmail.allowed_senders lists for that login,
as Postfix's local_login_sender_maps. Every message gets a Received line naming the uid.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import pwd
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from . import control, unixsocket
from .errors import InvalidInput, MailError
from .settings import message_size_limit

SOCKET_NAME = "submit.sock"
TIMEOUT_S = 60.0


def socket_path(root) -> Path:
    return root.run_dir / SOCKET_NAME


@dataclass
class Caller:
    uid: int
    pid: int
    login: str

    @classmethod
    def of(cls, sock: socket.socket) -> "Caller":
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                             struct.calcsize("3i")))
        try:
            login = pwd.getpwuid(uid).pw_name
        except KeyError:
            login = f"uid{uid}"
        return cls(uid, pid, login)


def mapped_sender(settings, login: str) -> str:
    domain = settings.sendmail.sender_domain or settings.server.default_domain or settings.server.hostname
    return f"{login}@{domain}"


def check_sender(settings, caller: Caller, requested: str | None) -> str:
    """The envelope sender this caller may use: its mapped address, or the requested one
    when the configuration allows it."""
    own = mapped_sender(settings, caller.login)
    if requested is None or requested.lower() == own.lower():
        return own
    if caller.uid in (0, os.geteuid()) or caller.login in settings.sendmail.trusted_users:
        return requested
    allowed = settings.sendmail.allowed_senders.get(caller.login, [])
    if "*" in allowed or requested.lower() in (a.lower() for a in allowed):
        return requested
    # the error is one line, whatever the caller asked for (a sender with a newline ...)
    shown = requested[:100] if requested.isprintable() else repr(requested[:100])
    raise InvalidInput(f"user {caller.login} may not send as {shown or '<>'}; "
                       f"allow it in sendmail.allowed_senders")


async def serve(runtime) -> asyncio.AbstractServer:
    """Listen on run/submit.sock, open to every local user (who the caller is comes from
    the kernel, not from the request)."""
    path = socket_path(runtime.root)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            caller = Caller.of(writer.get_extra_info("socket"))
            reply = await asyncio.wait_for(_submit(runtime, caller, reader), TIMEOUT_S)
        except asyncio.TimeoutError:
            reply = {"ok": False, "error": "timed out reading the message", "temporary": True}
        except (InvalidInput, ValueError) as e:
            reply = {"ok": False, "error": str(e), "temporary": False}
        except (MailError, OSError) as e:
            runtime.log.warning("local submission failed: %s", e)
            reply = {"ok": False, "error": getattr(e, "public", None) or "temporary failure; try again later",
                     "temporary": True}
        except Exception:
            runtime.log.exception("local submission: unexpected error")
            reply = {"ok": False, "error": "internal error; try again later", "temporary": True}
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            writer.close()

    with unixsocket.address(path) as where:
        server = await asyncio.start_unix_server(client, path=where)
    os.chmod(path, 0o666)
    # local users must reach the socket: the root and run/ are made traversable (x), not
    # listable or readable, by others
    for directory in (runtime.root.path, runtime.root.run_dir):
        mode = os.stat(directory).st_mode & 0o7777
        if mode & 0o011 != 0o011:
            os.chmod(directory, mode | 0o011)
    return server


async def _submit(runtime, caller: Caller, reader: asyncio.StreamReader) -> dict:
    from .accept import local
    try:
        line = await reader.readuntil(b"\n")      # the stream's limit (64 KiB) bounds it
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise InvalidInput("bad request: no request line") from None
    req = json.loads(line)
    if not isinstance(req, dict):
        raise InvalidInput("bad request")
    settings = runtime.settings
    limit = message_size_limit(settings)
    data = await reader.read(limit + 1)
    while len(data) <= limit:
        more = await reader.read(limit + 1 - len(data))
        if not more:
            break
        data += more
    if len(data) > limit:
        raise InvalidInput(f"message larger than {limit} bytes; refused")
    recipients = [str(r) for r in req.get("recipients") or []]
    sender = req.get("sender")
    sender = check_sender(settings, caller, None if sender is None else str(sender))
    # the caller's login is an account: its sending limits apply (engine/accept/sendlimits.py)
    mapped = runtime.directory.account(mapped_sender(settings, caller.login))
    account = mapped.address if mapped is not None else ""
    prepared, outcome = await runtime.run_blocking(functools.partial(
        local.send_message, runtime.root, settings, runtime.directory, data, sender=sender, recipients=recipients,
        extract=bool(req.get("extract")), source="sendmail", origin=local.local_user(caller.uid),
        pipeline=runtime.pipeline, account=account))
    runtime.log.info("local submission from uid %d (%s, pid %d): sender <%s>, %d delivered, queue %s",
                     caller.uid, caller.login, caller.pid, prepared.sender, len(outcome.delivered),
                     outcome.queue_id or "-")
    return {"ok": True, "sender": prepared.sender, "delivered": outcome.delivered, "queued": outcome.queue_id,
            "rejected": {k: str(v) for k, v in outcome.rejected.items()}, "warnings": prepared.warnings}


class ServerDown(MailError):
    pass


def submit(root, data: bytes, sender: str | None, recipients: list[str], extract: bool,
           timeout: float = TIMEOUT_S) -> dict:
    """Client side: hand a message to the running server. Raises ServerDown when no server
    answers on the socket."""
    path = socket_path(root)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            with unixsocket.address(path) as where:
                sock.connect(where)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError, NotADirectoryError) as e:
            raise ServerDown(f"the mail server is not running on {root.path} ({os.strerror(e.errno)} on "
                             f"run/{SOCKET_NAME}); message not sent, try again later") from None
        head = {"sender": sender, "recipients": recipients, "extract": extract}
        sock.sendall(json.dumps(head).encode() + b"\n")
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = control.read_reply_line(sock)
    except socket.timeout:
        raise ServerDown(f"the mail server did not answer within {timeout:g}s; message not sent") from None
    finally:
        sock.close()
    try:
        return json.loads(answer)
    except ValueError:
        raise ServerDown("the mail server gave no valid answer; message not sent") from None
