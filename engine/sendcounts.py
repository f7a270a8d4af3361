"""What each account sent to external recipients lately, for its sending limits
(engine/accept/sendlimits.py): one small JSON file per account under state/sendlimits/,
shared by every serving process and kept across restarts.

The file name is 32 hex digits, a hash of the account address (never text from the
network). The file holds

    {"account": "alice@example.com",
     "messages": [[minute, n], ...],        n messages sent in that minute (unix time // 60)
     "recipients": {"<16 hex>": minute},    each distinct external recipient (a hash, not the
                                            address) and the minute of the last message to it
     "blocked": <unix time, 0 = not blocked>, "blocked_why": "daily limit of ..."}

and nothing older than a day. The windows slide by the minute: "per hour" is the 60
minutes up to now, "per day" the 1440; a recipient counts once in a window however many
messages went to it. Recipients are kept only while a recipient limit is on, so an
account without one (a newsletter sender) keeps no list that grows.

A change is a read-modify-write under a flock on `.<name>.lock`, written by temp and
rename, so a reader without the lock sees the old file or the new one, never a torn one.
Not fsync'd: a machine crash may forget the last messages counted (the limit then lets
that many more through), where an fsync per message would cost every sender.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import nofollow
from .locks import FileLock
from .sendlimits_settings import Limits

HOUR, DAY = 60, 1440                  # the windows, in minutes
MAX_FILE = 1 << 24                    # a file larger than this is not ours: read as empty


def file_name(account: str) -> str:
    return hashlib.blake2b(account.lower().encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def recipient_key(address: str) -> str:
    return hashlib.blake2b(address.lower().encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Over:
    """A limit a message or recipient would pass: what (messages or recipients), per
    hour or day, and the limit."""
    what: str
    per: str
    limit: int

    @property
    def daily(self) -> bool:
        return self.per == "day"

    def text(self) -> str:
        return f"sending limit of {self.limit} {self.what} per {self.per}"


@dataclass
class Usage:
    """One account's file, as read at `now` (unix minutes)."""
    account: str
    now: int
    messages: dict[int, int] = field(default_factory=dict)
    recipients: dict[str, int] = field(default_factory=dict)
    blocked: float = 0.0
    blocked_why: str = ""

    def _sent(self, window: int) -> int:
        return sum(n for minute, n in self.messages.items() if minute > self.now - window)

    def _distinct(self, window: int) -> int:
        return sum(1 for minute in self.recipients.values() if minute > self.now - window)

    def new_recipients(self, keys, window: int) -> int:
        """How many of these recipients would be new in the window."""
        return sum(1 for k in set(keys) if self.recipients.get(k, -1) <= self.now - window)

    def public(self) -> dict:
        return {"messages_last_hour": self._sent(HOUR), "messages_last_day": self._sent(DAY),
                "recipients_last_hour": self._distinct(HOUR), "recipients_last_day": self._distinct(DAY),
                "blocked": bool(self.blocked), "blocked_since": self.blocked or None,
                "blocked_why": self.blocked_why or None}

    def over(self, limits: Limits, recipient_keys=(), message: bool = True) -> Over | None:
        """The first limit that one more message (when message) to these recipients passes,
        the daily ones first (they block)."""
        checks = (("messages", "day", limits.messages_per_day, DAY), ("messages", "hour", limits.messages_per_hour, HOUR),
                  ("recipients", "day", limits.recipients_per_day, DAY),
                  ("recipients", "hour", limits.recipients_per_hour, HOUR))
        for what, per, limit, window in checks:
            if not limit:
                continue
            if what == "messages":
                if message and self._sent(window) + 1 > limit:
                    return Over(what, per, limit)
            elif self.new_recipients(recipient_keys, window) and \
                    self._distinct(window) + self.new_recipients(recipient_keys, window) > limit:
                return Over(what, per, limit)
        return None

    def block_lifted(self, now: float, unblock_after_hours: float) -> bool:
        return bool(self.blocked) and bool(unblock_after_hours) and now >= self.blocked + unblock_after_hours * 3600


class SendCounts:
    """The files of one root. Blocking: the server calls it in its disk threads."""

    def __init__(self, root, clock: Callable[[], float] = time.time):
        self.dir = Path(root.state_dir) / "sendlimits"
        self.clock = clock

    def usage(self, account: str, unblock_after_hours: float = 0) -> Usage:
        """The account's counts now (read without the lock); a block past its time is
        shown lifted."""
        now = self.clock()
        usage = self._read(account, now)
        if usage.block_lifted(now, unblock_after_hours):
            usage.blocked, usage.blocked_why = 0.0, ""
        return usage

    def record(self, account: str, limits: Limits, recipients, unblock_after_hours: float = 0) -> Over | str | None:
        """Count one message to these external recipients, unless a limit refuses it: then
        the Over (a daily one blocks the account) or, when already blocked, why. Check and
        count are one step under the account's lock, so two processes never both take the
        last place under a limit."""
        keys = [recipient_key(r) for r in recipients]
        with self._lock(account):
            now = self.clock()
            usage = self._read(account, now)
            if usage.block_lifted(now, unblock_after_hours):
                usage.blocked, usage.blocked_why = 0.0, ""
            if usage.blocked:
                return usage.blocked_why or "blocked"
            over = usage.over(limits, keys)
            if over is not None:
                if over.daily:
                    usage.blocked, usage.blocked_why = now, over.text()
                    self._write(usage)
                return over
            usage.messages[usage.now] = usage.messages.get(usage.now, 0) + 1
            if limits.counts_recipients:
                for k in keys:
                    usage.recipients[k] = usage.now
            self._write(usage)
        return None

    def block(self, account: str, why: str, unblock_after_hours: float = 0) -> bool:
        """Block the account (a daily limit refused a recipient); False when it already was
        (a block past its time counts as none: it is renewed)."""
        with self._lock(account):
            now = self.clock()
            usage = self._read(account, now)
            if usage.blocked and not usage.block_lifted(now, unblock_after_hours):
                return False
            usage.blocked, usage.blocked_why = now, why
            self._write(usage)
        return True

    def unblock(self, account: str) -> bool:
        """`mailctl account unblock`: lift the block and forget the counts (the account
        starts afresh). False when there was nothing to forget."""
        with self._lock(account):
            try:
                os.unlink(self.dir / file_name(account))
            except FileNotFoundError:
                return False
        return True

    # -- files --
    def _lock(self, account: str) -> FileLock:
        return FileLock(self.dir / f".{file_name(account)}.lock", timeout=10.0)

    def _read(self, account: str, now: float) -> Usage:
        """The file as a Usage, old entries dropped; a missing, torn or foreign file is an
        empty one (the counts start afresh: never a refusal for a file we cannot read)."""
        minute = int(now // 60)
        usage = Usage(account.lower(), minute)
        try:
            fd = nofollow.open_file(self.dir / file_name(account), os.O_RDONLY, quiet=True)
        except OSError:
            return usage
        try:
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = json.loads(f.read(MAX_FILE))
            if data.get("account") != usage.account:
                return usage                      # a hash collision or a copied file
            oldest = minute - DAY
            for m, n in data.get("messages", []):
                if oldest < int(m) <= minute and int(n) > 0:
                    usage.messages[int(m)] = usage.messages.get(int(m), 0) + int(n)
            usage.recipients = {str(k): int(m) for k, m in data.get("recipients", {}).items()
                                if oldest < int(m) <= minute}
            blocked = float(data.get("blocked") or 0)
            usage.blocked = min(blocked, now) if math.isfinite(blocked) and blocked > 0 else 0.0
            usage.blocked_why = str(data.get("blocked_why") or "")[:200] if usage.blocked else ""
        except (OSError, ValueError, TypeError, AttributeError, OverflowError):
            return Usage(account.lower(), minute)
        finally:
            os.close(fd)
        return usage

    def _write(self, usage: Usage) -> None:
        data = {"account": usage.account, "messages": sorted(usage.messages.items()),
                "recipients": usage.recipients, "blocked": usage.blocked, "blocked_why": usage.blocked_why}
        self.dir.mkdir(parents=True, exist_ok=True)
        name = file_name(usage.account)
        tmp = self.dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, separators=(",", ":"))
            os.replace(tmp, self.dir / name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
