"""Greylisting's records (RFC 6647): one small file per triplet under state/greylist/,
shared by every serving process and kept across restarts.

A triplet is (the client's network, the envelope sender, the recipient); the network is
the client IP cut to greylist.ip_prefix_v4 / ip_prefix_v6 bits (/24, /64), so a sender
whose retries leave from a neighbouring address of the same farm still matches. A
record's file name is a hash of the triplet (never text from the network); it holds

    client = "192.0.2.0/24"   sender = "a@example.org"   recipient = "bob@example.com"
    created = <unix time of the first try>   passed = <unix time of the first accepted
    retry, 0 while it waits>

and its mtime is the last time it let mail through. A record for sender and recipient
"*" is `mailctl greylist allow IP`: the whole client network passes.

Expiry (hMailServer's two settings): a record still waiting is removed unused_expiry_hours
after its first try; one that passed is removed pass_expiry_days after its last use.
An expired record counts as missing at once (lazily); `flush` and the server's
timer remove the files.

Writes are atomic (a temp file, then link() for a new record, so two processes cannot
both start one, or rename() for a change) but not fsync'd: a record a crash loses costs
one more 451 to a sender that retries anyway, and never a message, while an fsync per
RCPT would make a spam run disk-bound.
"""
from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import ipaddress
import os
import re
import secrets
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import tomli_w

from . import nofollow
from .errors import InvalidInput

ANY = "*"                        # sender and recipient of an `allow` record
_NAME = re.compile(r"[0-9a-f]{32}\Z")
_PATTERN = re.compile(r"[0-9A-Fa-f:.*?]+\Z")

# what look() finds
PASSED, ALLOWED, DUE, EARLY, NEW = "passed", "allowed", "due", "early", "new"


@dataclass(frozen=True)
class Record:
    client: str
    sender: str
    recipient: str
    created: float
    passed: float = 0.0          # 0: still waiting for a retry
    used: float = 0.0            # the file's mtime: the last time it let mail through
    name: str = ""

    def expires(self, cfg) -> float:
        if self.passed:
            return self.used + float(cfg.pass_expiry_days) * 86400
        return self.created + float(cfg.unused_expiry_hours) * 3600

    def public(self, cfg) -> dict:
        state = "allowed" if self.sender == ANY else "passed" if self.passed else "waiting"
        return {"client": self.client, "sender": self.sender, "recipient": self.recipient, "state": state,
                "created": self.created, "passed": self.passed or None,
                "last_used": self.used if self.passed else None, "expires": self.expires(cfg)}


# -- the triplet --------------------------------------------------------------------------

def client_network(ip: str, prefix_v4: int = 24, prefix_v6: int = 64) -> str:
    """The client's network as the triplet keeps it ('192.0.2.0/24'); IPv4-mapped IPv6
    addresses count as IPv4. Raises InvalidInput for anything that is not an address."""
    try:
        addr = ipaddress.ip_address(str(ip).strip().strip("[]"))
    except ValueError:
        raise InvalidInput(f"{_shown(str(ip))} is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    prefix = prefix_v4 if addr.version == 4 else prefix_v6
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def record_name(client: str, sender: str, recipient: str) -> str:
    """The file name of a triplet: 32 hex digits, whatever the addresses hold."""
    text = "\0".join((client, sender.lower(), recipient.lower()))
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


# -- the whitelists ---------------------------------------------------------------------

def pattern_problem(pattern: str) -> str | None:
    """Why an entry of greylist.whitelist_networks is neither an address, a network
    (192.0.2.0/24) nor a wildcard pattern of one (192.168.*, 10.0.?.*)."""
    if "*" in pattern or "?" in pattern:
        return None if _PATTERN.match(pattern) else f"{_shown(pattern)} is not an IP address pattern (like 192.168.*)"
    try:
        ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return f"{_shown(pattern)} is not an IP address, network (like 192.0.2.0/24) or pattern (like 192.168.*)"
    return None


def ip_listed(ip: str, patterns) -> bool:
    """Is ip in one of the networks or does it match one of the wildcard patterns?"""
    if not patterns:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    text = str(addr)
    for p in patterns:
        if "*" in p or "?" in p:
            if fnmatch.fnmatchcase(text, p.lower()):
                return True
            continue
        network = _network(p)
        if network is not None and addr in network:
            return True
    return False


@functools.lru_cache(maxsize=1024)
def _network(pattern: str):
    """A network of a setting, parsed once (it is asked for every recipient); None if it is not one."""
    try:
        return ipaddress.ip_network(pattern, strict=False)
    except (ValueError, TypeError):
        return None


def domain_listed(sender: str, patterns) -> bool:
    """Is the sender's domain one of the domains (wildcards allowed: *.example.com)?"""
    domain = sender.rpartition("@")[2].lower().rstrip(".")
    return bool(domain) and any(fnmatch.fnmatchcase(domain, str(p).lower()) for p in patterns)


# -- the store --------------------------------------------------------------------------

class Greylist:
    """The records of one root under the settings' [greylist] section. Blocking: the
    server calls it in its disk threads."""

    def __init__(self, root, cfg, clock: Callable[[], float] = time.time):
        self.dir = Path(root.state_dir) / "greylist"
        self.cfg = cfg
        self.clock = clock

    # -- the decision --
    def look(self, client: str, sender: str, recipient: str, write: bool = True) -> str:
        """PASSED (it passed before and is in use: its last use is now), ALLOWED (the
        client network was allowed), DUE (waited long enough: now marked passed), EARLY
        (waiting) or NEW (no record, or an expired one: start() makes it). write=False
        (`mailctl check message`): the same answer, nothing written."""
        now = self.clock()
        name = record_name(client, sender, recipient)
        rec = self._read(name)
        if rec is not None and rec.expires(self.cfg) <= now:
            rec = None
        if rec is not None and rec.passed:
            if write:
                self._touch(name, now)
            return PASSED
        allow = self._read(record_name(client, ANY, ANY))
        if allow is not None and allow.expires(self.cfg) > now:
            if write:
                self._touch(allow.name, now)
            return ALLOWED
        if rec is None:
            return NEW
        if now - rec.created >= float(self.cfg.delay_minutes) * 60:
            if write:
                self._write(Record(client, sender, recipient, rec.created, now), now, replace=True)
            return DUE
        return EARLY

    def start(self, client: str, sender: str, recipient: str) -> float:
        """Record a first try now (an expired record is replaced); returns the record's
        creation time, which is another process's when it made the record first."""
        now = self.clock()
        rec = Record(client, sender, recipient, now)
        if self._write(rec, now, replace=False):
            return now
        old = self._read(rec.name or record_name(client, sender, recipient))
        if old is None or old.expires(self.cfg) <= now:
            self._write(rec, now, replace=True)
            return now
        return old.created

    def allow(self, ip: str) -> str:
        """`mailctl greylist allow IP`: the client network of ip passes from now on (until
        pass_expiry_days after its last use). Returns the network."""
        client = client_network(ip, self.cfg.ip_prefix_v4, self.cfg.ip_prefix_v6)
        now = self.clock()
        self._write(Record(client, ANY, ANY, now, now), now, replace=True)
        return client

    # -- listing and expiry --
    def records(self, include_expired: bool = False) -> list[Record]:
        now = self.clock()
        out = []
        for name in self._names():
            rec = self._read(name)
            if rec is not None and (include_expired or rec.expires(self.cfg) > now):
                out.append(rec)
        return sorted(out, key=lambda r: (r.created, r.client, r.sender, r.recipient))

    def flush(self, everything: bool = False) -> int:
        """Remove the expired records (every record when everything), and temp files a
        crash left; returns how many records went."""
        now = self.clock()
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.dir):
                if entry.name.startswith("."):
                    with contextlib.suppress(OSError):
                        if now - entry.stat(follow_symlinks=False).st_mtime > 3600:
                            os.unlink(entry.path)
                    continue
                if not _NAME.match(entry.name):
                    continue
                rec = self._read(entry.name)
                if everything or rec is None or rec.expires(self.cfg) <= now:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
        return removed

    # -- files --
    def _names(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.dir) if _NAME.match(e.name))
        except FileNotFoundError:
            return []

    def _read(self, name: str) -> Record | None:
        """The record, or None when missing or unreadable (a torn or hand-edited file
        counts as no record: the sender is greylisted anew, never refused)."""
        path = self.dir / name
        try:
            fd = nofollow.open_file(path, os.O_RDONLY, quiet=True)
        except OSError:
            return None
        try:
            used = os.fstat(fd).st_mtime
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = tomllib.loads(f.read(4096).decode("utf-8"))
            return Record(str(data["client"]), str(data["sender"]), str(data["recipient"]),
                          float(data["created"]), float(data.get("passed", 0)), used, name)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError):
            return None
        finally:
            os.close(fd)

    def _write(self, rec: Record, now: float, replace: bool) -> bool:
        """Write rec (its mtime now). Without replace only when no record exists: False
        when one does. Raises OSError when the store cannot be written."""
        name = record_name(rec.client, rec.sender, rec.recipient)
        text = tomli_w.dumps({"client": rec.client, "sender": rec.sender, "recipient": rec.recipient,
                              "created": rec.created, "passed": rec.passed})
        self.dir.mkdir(parents=True, exist_ok=True)
        target = self.dir / name
        tmp = self.dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8"))
            os.utime(tmp, (now, now))
            if replace:
                os.replace(tmp, target)
                return True
            try:
                os.link(tmp, target)        # fails when another process made it first
            except FileExistsError:
                return False
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _touch(self, name: str, now: float) -> None:
        """Note a use; a store that cannot be written only shortens the record's life."""
        with contextlib.suppress(OSError):
            os.utime(self.dir / name, (now, now), follow_symlinks=False)


def _shown(text: str) -> str:
    return repr(text[:80] + ("..." if len(text) > 80 else ""))
