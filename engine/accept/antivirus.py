"""The virus-scanning stage: every message, whichever way it came in, is streamed to clamd
(engine/scan/clamd.py) and/or an external scanner command (engine/scan/command.py) before
anything is stored ([antivirus] in mailctl.toml, engine/scan/settings.py).

Infected: 554 5.7.1 naming the virus (nothing is kept), or its infected attachments
replaced by a note (action = "strip"), or dropped with a notice to the administrator
(action = "discard"). A scanner that gives no verdict never lets mail through unseen
unless told to (on_failure = "accept": a header says it was not scanned); by default 451.
Verdicts are logged and counted (`counts()`: mailctl status adds them up).
"""
from __future__ import annotations

import email.utils
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from .. import delivery
from ..largemsg import LargeMessage
from ..scan import clamd, command, strip
from ..scan.verdict import Found, ScanFailed
from ..smtp import replies
from . import clientgate
from .arrival import Arrival
from .verdicts import CONTINUE, AddHeaders, Defer, Discard, Reject

HEADER = "X-Virus-Scanned"
_counts: Counter = Counter()
_counts_lock = threading.Lock()


def scan_viruses(arrival: Arrival):
    """The stage: scan the message; the verdict its result and the settings ask for."""
    cfg = getattr(arrival.settings, "antivirus", None)
    if cfg is None or not cfg.enabled or not (cfg.clamd or cfg.command) or _all_opted_out(arrival):
        return CONTINUE
    if not clientgate.virus_checks_run(arrival.settings, arrival.envelope.client_ip):     # its IP range says so
        return CONTINUE
    env, size = arrival.envelope, len(arrival.content)
    who = f"{env.client_ip or env.source}: {env.txid or '-'}"
    if size > cfg.max_size_mb * 1024 * 1024:
        _count("antivirus_not_scanned")
        arrival.log.info("antivirus: %s: not scanned: %d bytes is over max_size_mb", who, size)
        if cfg.oversize == "reject":
            return Reject(replies.TOO_BIG_TO_SCAN, "virus-scan-size")
        return _header(cfg, f"not scanned (larger than {cfg.max_size_mb:g} MB)", force=True)
    started = time.monotonic()
    try:
        found = scan(cfg, arrival.root, lambda: _pieces(arrival.content))
    except ScanFailed as e:
        _count("antivirus_failed")
        arrival.log.warning("antivirus: %s: no verdict: %s", who, e)
        if cfg.on_failure == "accept":
            return _header(cfg, "not scanned (scanner unavailable)", force=True)
        return Defer(replies.SCANNER_UNAVAILABLE, "virus-scan-failed")
    ms = (time.monotonic() - started) * 1000
    if not found.infected:
        _count("antivirus_clean")
        arrival.log.info("antivirus: %s: clean (%s, %.0f ms)", who, found.engine, ms)
        return _header(cfg, f"mailctl ({found.engine})")
    _count("antivirus_infected")
    arrival.log.warning("antivirus: %s: infected: %s (%s, %.0f ms); action %s", who, found.name,
                        found.engine, ms, cfg.action)
    if cfg.action == "discard" and env.by_smtp:        # injected mail: its sender is told (refused)
        _notify_administrator(arrival, found)
        return Discard(f"virus {found.name}")
    if cfg.action == "strip":
        stripped = _strip(arrival, cfg, who)
        if stripped is not None:
            return stripped
    return Reject(replies.virus_found(found.name), "virus")


def scan(cfg, root, pieces, deadline: float | None = None) -> Found:
    """Every configured scanner on the bytes pieces() yields; the first that finds a virus
    tells it. Raises ScanFailed when one gives no verdict (or the deadline has passed)."""
    timeout = float(cfg.timeout_s)
    if deadline is not None:
        timeout = min(timeout, deadline - time.monotonic())
        if timeout <= 0:
            raise ScanFailed("no time left to scan the parts one by one")
    found = Found()
    if cfg.clamd:
        found = clamd.scan(cfg.clamd, pieces(), timeout)
    if not found.infected and cfg.command:
        by_clamd = found.engine
        found = command.scan(list(cfg.command), pieces(), scan_dir(root), timeout, tuple(cfg.command_virus_codes))
        if by_clamd and not found.infected:
            found = Found(engine=f"{by_clamd}, {found.engine}")        # both said clean
    return found


def _pieces(content):
    """The message as pieces of bytes: a LargeMessage's head and file pieces, else itself."""
    return iter(content) if isinstance(content, LargeMessage) else iter((content,))


def scan_dir(root) -> Path:
    """Where an external scanner's file is written: the root's tmp/, one directory per user
    (the serving user's, and root's for `mailctl send` run as root)."""
    base = Path(root.path) / "tmp" if root is not None else Path(tempfile.gettempdir()) / "mailctl"
    return base / f"scan-{os.geteuid()}"


def _strip(arrival: Arrival, cfg, who: str):
    """The message with its infected parts replaced, rescanned; None when that is not possible."""
    content = arrival.content
    data = content.read_all() if isinstance(content, LargeMessage) else bytes(content)
    deadline = time.monotonic() + float(cfg.timeout_s)     # for every part and the rescan together
    try:
        result = strip.strip_infected(
            data, lambda part: scan(cfg, arrival.root, lambda: iter((part,)), deadline), arrival.eol)
        if result is None or scan(cfg, arrival.root, lambda: iter((result[0],)), deadline).infected:
            return None
    except ScanFailed as e:
        arrival.log.warning("antivirus: %s: could not strip: %s", who, e)
        return None
    arrival.content, removed = result
    arrival.log.info("antivirus: %s: removed %s", who, ", ".join(f"{n} ({v})" for n, v in removed))
    _count("antivirus_stripped")
    return _header(cfg, f"mailctl ({', '.join(f'{v} removed' for _, v in removed)})", force=True)


def _header(cfg, text: str, force: bool = False):
    """X-Virus-Scanned on top; one saying the message was NOT scanned (or was changed) is
    always added, whatever antivirus.header says."""
    if not (cfg.header or force):
        return CONTINUE
    return AddHeaders((f"{HEADER}: {text}".encode("ascii", "replace"),), on_top=True)


def _all_opted_out(arrival: Arrival) -> bool:
    """Every recipient is in a local domain whose file says antivirus = false."""
    directory = arrival.directory
    if directory is None or not arrival.envelope.recipients:
        return False
    for rcpt in arrival.envelope.recipients:
        d = directory.domain(rcpt.rpartition("@")[2].lower())
        if d is None or getattr(d, "antivirus", True):
            return False
    return True


def _notify_administrator(arrival: Arrival, found: Found) -> None:
    """action = "discard": the administrator hears what was dropped (never the message)."""
    from ..outbound.dsn import postmaster
    env, hostname = arrival.envelope, arrival.hostname
    to = postmaster(arrival.settings, arrival.directory) if arrival.directory is not None else ""
    if not to:
        arrival.log.error("antivirus: no administrator to tell of a discarded message; set server.postmaster")
        return
    text = "\r\n".join([
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>", f"To: <{to}>",
        f"Subject: Virus {found.name} found; message discarded", f"Date: {email.utils.formatdate()}",
        f"Message-ID: {email.utils.make_msgid(domain=hostname)}", "Auto-Submitted: auto-generated",
        "Content-Type: text/plain; charset=us-ascii", "",
        f"A message was accepted and discarded because it contains the virus {found.name}",
        f"(found by {found.engine}). It was not kept.", "",
        f"Sender:     <{_shown(env.sender)}>", f"Recipients: {_shown(', '.join(env.recipients))}",
        f"Came in by: {env.source} {_shown(env.client_ip or env.origin)}", f"Id:         {env.txid or '-'}", ""])
    try:
        delivery.deliver(arrival.root, arrival.settings, arrival.directory, "", [to], text.encode("ascii", "replace"),
                         source="postmaster-notice")
    except Exception as e:  # noqa: BLE001 - the discard stands; the log says the notice was lost
        arrival.log.error("antivirus: notice to %s not delivered: %s", to, e)


def _shown(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text[:300])


def _count(name: str) -> None:
    with _counts_lock:
        _counts[name] += 1


def counts() -> dict[str, int]:
    """This process's verdicts so far (mailctl status adds up every serving process's)."""
    with _counts_lock:
        return dict(_counts)


def check(settings, data: bytes, root=None) -> tuple[str, str | None]:
    """`mailctl check message`: (what the scanners say, the reply it means or None)."""
    cfg = settings.antivirus
    if not cfg.enabled or not (cfg.clamd or cfg.command):
        return "not scanned (antivirus.enabled is false)", None
    if len(data) > cfg.max_size_mb * 1024 * 1024:
        return "not scanned (over antivirus.max_size_mb)", (replies.TOO_BIG_TO_SCAN if cfg.oversize == "reject" else None)
    try:
        found = scan(cfg, root, lambda: iter((data,)))
    except ScanFailed as e:
        return f"no verdict: {e}", (replies.SCANNER_UNAVAILABLE if cfg.on_failure == "defer" else None)
    if not found.infected:
        return f"clean ({found.engine})", None
    return f"infected: {found.name} ({found.engine}); action {cfg.action}", (
        replies.virus_found(found.name) if cfg.action == "reject" else None)


def status(settings) -> str:
    """`mailctl status`: whether clamd answers."""
    cfg = getattr(settings, "antivirus", None)
    if cfg is None or not cfg.enabled:
        return "off"
    parts = []
    if cfg.clamd:
        version = clamd.ping(cfg.clamd, min(2.0, float(cfg.timeout_s)))
        meanwhile = "deferred" if cfg.on_failure == "defer" else "accepted unscanned"
        parts.append(f"clamd answers ({version})" if version else f"clamd does NOT answer (mail is {meanwhile})")
    if cfg.command:
        parts.append(f"command {Path(cfg.command[0]).name}")
    return "; ".join(parts) or "no scanner configured"
