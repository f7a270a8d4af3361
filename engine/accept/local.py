"""Mail injected on this machine (mailctl send, sendmail-mailctl, sendmail(1) of local
users, the pickup folder): reading the message and its envelope, then the acceptance
pipeline as for SMTP.

No SMTP listener is needed: local recipients are delivered to their Maildirs and the
others are written into the queue, in one step (engine.delivery). A running server is
then told the queue changed, so it sends at once.
"""
from __future__ import annotations

import email.utils
import getpass
import os
import re
from dataclasses import dataclass, field

from ..addresses import parse_address
from ..delivery import Outcome
from ..errors import InvalidInput, MailError
from ..settings import message_size_limit
from .arrival import SEND, Arrival, Envelope
from .pipeline import Pipeline
from .verdicts import Defer, Discard, Reject

_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")        # field name: printable ASCII except ':'
MAX_HEADER_BYTES = 1 << 20


@dataclass
class Prepared:
    """A message read in, with its envelope; data is what the sender gave, less Bcc (and
    X-Sender / X-Receiver), until the pipeline completes it."""
    sender: str
    recipients: list[str]
    data: bytes
    warnings: list[str] = field(default_factory=list)
    eol: bytes = b"\n"                # the line end its header uses
    header_end: int = 0               # where its header block ends (lines are added there)


def split(data: bytes) -> tuple[list[bytes], bytes, bool]:
    """(header lines with their continuations, body, whether a blank line ended the headers)."""
    lines = data.split(b"\n")
    trailing = bool(lines) and lines[-1] == b""
    if trailing:
        lines.pop()                   # the final newline does not make a blank line
    headers: list[bytes] = []
    i = 0
    ended = False
    while i < len(lines):
        line = lines[i]
        bare = line.rstrip(b"\r")
        if bare == b"":
            ended = True
            i += 1
            break
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1] += b"\n" + line
        elif _HEADER_LINE.match(bare):
            headers.append(line)
        elif bare.startswith(b"From ") and not headers:
            pass                                            # mbox separator line: dropped
        else:
            break
        i += 1
    body = b"\n".join(lines[i:])
    if trailing and i < len(lines):
        body += b"\n"
    return headers, body, ended


def _name(h: bytes) -> str:
    return h.split(b":", 1)[0].decode("ascii", "replace").strip().lower()


def _value(h: bytes) -> str:
    raw = h.split(b":", 1)[1].decode("utf-8", "replace")
    return " ".join(raw.replace("\r", "").split("\n")).strip()


def _addresses(values: list[str]) -> list[str]:
    out = []
    for _, addr in email.utils.getaddresses(values):
        if addr and "@" in addr and addr not in out:
            out.append(addr)
    return out


def read_in(data: bytes, *, sender: str | None = None, recipients: list[str] | None = None,
            extract: bool = False, use_x_headers: bool = False, hostname: str = "localhost",
            max_size: int = 0) -> Prepared:
    """Check a message and work out its envelope.

    extract (-t): recipients from To, Cc and Bcc (plus any given). use_x_headers
    (pickup, hMailServer's convention): X-Sender / X-Receiver give the envelope and are
    removed. Bcc is always removed. Raises InvalidInput for what is not a mail message."""
    if not data.strip():
        raise InvalidInput("empty message (0 bytes)")
    if max_size and len(data) > max_size:
        raise InvalidInput(f"message of {len(data)} bytes is larger than the limit of {max_size} bytes")
    if b"\0" in data[:65536]:
        raise InvalidInput("not a mail message: it contains NUL bytes (binary data)")
    headers, body, ended = split(data)
    if not headers:
        raise InvalidInput("not a mail message: the first line is not a header field (Name: value)")
    if sum(len(h) for h in headers) > MAX_HEADER_BYTES:
        raise InvalidInput("headers larger than 1 MiB")
    if not ended:
        raise InvalidInput("message has headers but no body (no empty line after the headers)"
                           if not body.strip() else
                           "malformed header section: a line that is not a header field came before the body")
    names = [_name(h) for h in headers]
    by_name: dict[str, list[str]] = {}
    for n, h in zip(names, headers):
        by_name.setdefault(n, []).append(_value(h))
    rcpts = list(recipients or [])
    env_sender = sender
    drop = {"bcc"}
    if use_x_headers and ("x-receiver" in by_name or "x-sender" in by_name):
        drop |= {"x-sender", "x-receiver"}
        rcpts += _addresses(by_name.get("x-receiver", []))
        xs = _addresses(by_name.get("x-sender", []))
        if env_sender is None and xs:
            env_sender = xs[0]
    elif extract or use_x_headers:
        rcpts += _addresses(by_name.get("to", []) + by_name.get("cc", []) + by_name.get("bcc", []))
    if env_sender is None:
        frm = _addresses(by_name.get("from", []) + by_name.get("sender", []))
        env_sender = frm[0] if frm else f"{getpass.getuser()}@{hostname}"
    checked: list[str] = []
    warnings: list[str] = []
    for r in rcpts:
        try:
            a = str(parse_address(r))
        except InvalidInput as e:
            warnings.append(f"{r}: {e}")
            continue
        if a not in checked:
            checked.append(a)
    if not checked:
        hint = (" (no X-Receiver, To, Cc or Bcc header)" if use_x_headers else
                " (give them as arguments, or use -t to read To/Cc/Bcc)")
        raise InvalidInput("no recipients" + (f" ({'; '.join(warnings)})" if warnings else hint))
    if env_sender:
        try:
            env_sender = str(parse_address(env_sender))
        except InvalidInput as e:
            raise InvalidInput(f"sender {env_sender}: {e}") from None
    eol = b"\r\n" if headers[0].endswith(b"\r") else b"\n"
    kept = [h.rstrip(b"\r") for n, h in zip(names, headers) if n not in drop]
    head = b"".join(h.replace(b"\r\n", b"\n").replace(b"\n", eol) + eol for h in kept)
    return Prepared(env_sender or "", checked, head + eol + body, warnings, eol, len(head))


def arrival(prepared: Prepared, root, settings, directory, source: str, origin: str,
            before_commit=None, account: str = "") -> Arrival:
    """The pipeline's view of a message read in."""
    envelope = Envelope(source, prepared.sender, prepared.recipients, origin=origin, account=account)
    return Arrival(envelope, prepared.data, root, settings, directory, eol=prepared.eol,
                   header_end=prepared.header_end, before_commit=before_commit)


def prepare(data: bytes, *, sender: str | None = None, recipients: list[str] | None = None,
            extract: bool = False, use_x_headers: bool = False, hostname: str = "localhost",
            source: str = "sendmail", max_size: int = 0, received_from: str = "localhost") -> Prepared:
    """read_in, then the pipeline's header stages: the message as it would be stored or
    queued (Received line, Date, Message-ID and From added), without storing it."""
    from . import stages
    prepared = read_in(data, sender=sender, recipients=recipients, extract=extract,
                       use_x_headers=use_x_headers, hostname=hostname, max_size=max_size)
    message = arrival(prepared, None, None, None, source, received_from)
    message.hostname = hostname
    Pipeline((stages.complete_headers, stages.received), ()).run(message)
    prepared.data = bytes(message.content)
    return prepared

def local_user(uid: int | None = None) -> str:
    """How a Received line names a local caller: its login and uid."""
    import pwd
    uid = os.getuid() if uid is None else uid
    try:
        login = pwd.getpwuid(uid).pw_name
    except KeyError:
        login = f"uid{uid}"
    return f"local user {login} (uid {uid})"


def send_message(root, settings, directory, data: bytes, *, sender: str | None = None,
                 recipients: list[str] | None = None, extract: bool = False, use_x_headers: bool = False,
                 source: str = SEND, origin: str | None = None, pipeline: Pipeline | None = None,
                 before_commit=None, wake: bool = True, account: str = "") -> tuple[Prepared, Outcome]:
    """Read a message in and send it through the acceptance pipeline: local copies and the
    queue item, durably (blocking). origin names the sender in the Received line (default:
    the user running this process); wake tells a running server the queue changed;
    account is the account whose sending limits it counts against (sendmail(1) of a local
    user through run/submit.sock).

    Raises InvalidInput for a message that is not one (or a stage's Reject), MailError
    when a stage defers it; a recipient refused is in the outcome, not raised."""
    prepared = read_in(data, sender=sender, recipients=recipients, extract=extract, use_x_headers=use_x_headers,
                       hostname=settings.server.hostname, max_size=message_size_limit(settings))
    message = arrival(prepared, root, settings, directory, source, local_user() if origin is None else origin,
                      before_commit, account)
    verdict = (pipeline or Pipeline()).run(message)
    if isinstance(verdict, Reject):
        raise InvalidInput(verdict.reply)
    if isinstance(verdict, Defer):
        raise MailError(verdict.reply, public=verdict.reply)      # a protocol reply: no path in it
    outcome = Outcome() if isinstance(verdict, Discard) else message.outcome
    prepared.data = bytes(message.content)
    if wake and outcome.queue_id:
        tell_server(root)
    return prepared, outcome


def tell_server(root) -> bool:
    """Wake a running server's queue runner (False when no server runs: it will find
    the item when it starts)."""
    from ..outbound.wakeup import notify_server
    return notify_server(root)
