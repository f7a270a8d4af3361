"""Auto-ban of IP addresses after repeated failed logins, shared by every protocol.

State lives in the root, so restarts, other server processes and `mailctl ban` see it:
  state/bans/<ip>.toml            one ban: ip, until, reason, protocol, created
  state/auth-failures/<ip>.log    one line per failed login: '<unix time> <protocol>'

Failures are appended with O_APPEND (one small write is atomic); a ban is one atomic
file write. Expired bans and failures are ignored and swept lazily.

A ban made by `mailctl ban add` has manual = true: it is refused at connect like an
access-list deny (engine/access/gate.py), and applies even to the addresses of
access.ban_exempt, which are never banned automatically (their failures are not counted).

When the state cannot be written (a full or read-only disk, any I/O error) the failures
and bans are kept in this process's memory instead, so a ban still applies here and a
login still gets its ordinary answer; the fault is logged once until a write works again.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import time
import tomllib
from typing import Callable

import tomli_w

from . import nofollow
from .access.patterns import in_networks, network_of
from .errors import InvalidInput, NotFound
from .root import Root, atomic_write

log = logging.getLogger("mailctl")

def normalize_ip(ip: str) -> str:
    """A canonical text form; refuses anything that is not an IP address (it becomes a file name)."""
    try:
        addr = ipaddress.ip_address(str(ip).strip().strip("[]"))
    except ValueError:
        raise InvalidInput(f"{ip!r} is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return str(addr)


def _same_file(fd: int, path) -> bool:
    """Whether the open file is still the one at `path` (a compaction renames a new one in)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


FOREVER = 253402300799.0      # 9999-12-31: a manual ban without an end


def _file_stem(ip: str) -> str:
    return ip.replace(":", "_")     # IPv6 colons make awkward file names


class Bans:
    def __init__(self, root: Root, settings, clock: Callable[[], float] = time.time):
        self.root = root
        self.settings = settings
        self.clock = clock
        self.dir = root.state_dir / "bans"
        self.failures_dir = root.state_dir / "auth-failures"
        self._cache_key = None
        self._cache: dict[str, tuple[float, bool]] = {}     # ip -> (until, manual)
        self._held_bans: dict[str, float] = {}          # ip -> until, not written
        self._held_failures: dict[str, list[str]] = {}  # ip -> failure lines, not written
        self._write_failing = False

    def _written(self, write: Callable[[], None]) -> bool:
        """Run one state write; False (logged once per outage) when it fails."""
        try:
            write()
        except OSError as e:
            if not self._write_failing:
                log.warning("bans: cannot write %s: %s; keeping bans and failed logins "
                            "in memory until it can", self.root.state_dir, e.strerror)
            self._write_failing = True
            return False
        self._write_failing = False
        return True

    # -- reading --
    def _load_all(self) -> dict[str, dict]:
        out = {}
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return out
        for e in entries:
            if not e.name.endswith(".toml") or e.name.startswith("."):
                continue
            with contextlib.suppress(OSError, tomllib.TOMLDecodeError, KeyError, ValueError):
                data = tomllib.loads(nofollow.read_text(e.path))
                out[normalize_ip(data["ip"])] = data
        return out

    def _active(self) -> dict[str, tuple[float, bool]]:
        """ip -> (until, manual), cached while the directory is unchanged (a stat per check)."""
        try:
            st = os.stat(self.dir)
            key = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            return {}
        if key != self._cache_key:
            self._cache = {ip: (float(d.get("until", 0)), d.get("manual") is True)
                           for ip, d in self._load_all().items()}
            self._cache_key = key
        return self._cache

    def is_banned(self, ip: str) -> bool:
        active = self._active()
        if not active and not self._held_bans:
            return False                      # the usual case: no address to parse
        try:
            ip = normalize_ip(ip)
        except InvalidInput:
            return False
        until, manual = active.get(ip, (0.0, False))
        if until and not manual and self.exempt(ip):
            return False                      # an automatic ban made before the exemption
        until = max(until, self._held_bans.get(ip, 0))
        return until > self.clock()

    def is_manually_banned(self, ip: str) -> bool:
        """A ban by `mailctl ban add` holds ip now."""
        active = self._active()
        if not active:
            return False
        try:
            until, manual = active.get(normalize_ip(ip), (0.0, False))
        except InvalidInput:
            return False
        return manual and until > self.clock()

    def exempt(self, ip: str) -> bool:
        """ip is in access.ban_exempt: never banned automatically."""
        exempt = getattr(getattr(self.settings, "access", None), "ban_exempt", None)
        return bool(exempt) and in_networks(ip, [network_of(str(n)) for n in exempt])

    def list(self) -> list[dict]:
        now = self.clock()
        rows = []
        for ip, d in sorted(self._load_all().items()):
            until = float(d.get("until", 0))
            if until <= now:
                continue
            forever = until >= FOREVER
            rows.append({"ip": ip, "until": None if forever else until,
                         "remaining_s": None if forever else int(until - now),
                         "reason": d.get("reason", ""), "protocol": d.get("protocol", ""),
                         "created": float(d.get("created", 0)), "manual": d.get("manual") is True})
        return rows

    # -- changing --
    def ban(self, ip: str, minutes: float | None, reason: str, protocol: str = "", manual: bool = False) -> None:
        """Ban ip for `minutes` (None: until lifted, for a manual ban)."""
        ip = normalize_ip(ip)
        now = self.clock()
        until = FOREVER if minutes is None else min(now + minutes * 60, FOREVER)
        record = {"ip": ip, "until": until, "created": now, "reason": reason, "protocol": protocol}
        if manual:
            record["manual"] = True
        text = tomli_w.dumps(record)

        def write():
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.dir / f"{_file_stem(ip)}.toml", text)
        if self._written(write):
            self._held_bans.pop(ip, None)
        else:
            self._held_bans[ip] = until
        self._cache_key = None

    def remove(self, ip: str) -> None:
        ip = normalize_ip(ip)
        path = self.dir / f"{_file_stem(ip)}.toml"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.failures_dir / f"{_file_stem(ip)}.log")
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise NotFound(f"{ip} is not banned; see 'mailctl ban list'") from None
        self._cache_key = None

    # -- counting failed logins --
    # A login counts as failed from before its password is checked, so attempts made at
    # once (on many connections, in several processes) all see each other: the one after
    # the limit is refused unchecked. A login that succeeds appends an 'ok' line, which
    # cancels its own line (same time stamp, so the two leave the window together).

    def begin_attempt(self, ip: str, protocol: str) -> tuple[bool, float]:
        """Before a password is checked: (whether to check it at all, the stamp that
        attempt_succeeded cancels). Blocking: run off the loop."""
        if self.is_banned(ip):
            return False, 0.0
        path = self._failures_path(ip)
        if path is None:
            return True, 0.0
        now = self.clock()
        self._append(path, f"{now:.3f} {protocol}")
        return self._recent(path, now) <= self.settings.auth.ban_after_failures, now

    def attempt_succeeded(self, ip: str, protocol: str, stamp: float) -> None:
        path = self._failures_path(ip)
        if path is not None:
            self._append(path, f"{stamp:.3f} {protocol} ok")

    def attempt_failed(self, ip: str, protocol: str) -> bool:
        """After begin_attempt, when the login failed; True when this failure started a ban."""
        path = self._failures_path(ip)
        if path is None:
            return False
        auth = self.settings.auth
        recent = self._recent(path, self.clock())
        if recent >= auth.ban_after_failures:
            if not self.is_banned(ip):
                self.ban(ip, auth.ban_minutes,
                         f"{recent} failed logins within {auth.ban_window_minutes:g} minutes", protocol)
                self._held_failures.pop(str(path), None)
                with contextlib.suppress(OSError):
                    os.unlink(path)
                return True
        return False

    def record_failure(self, ip: str, protocol: str) -> bool:
        """Note one failure (a login, or talking before the greeting); True when it started a
        ban. Blocking: run off the loop."""
        if self._failures_path(ip) is None:
            return False
        self._append(self._failures_path(ip), f"{self.clock():.3f} {protocol}")
        return self.attempt_failed(ip, protocol)

    def _failures_path(self, ip: str):
        """The file of an IP's failures; None when failures are not counted (no bans, not an IP)."""
        if self.settings.auth.ban_after_failures <= 0:
            return None
        try:
            ip = normalize_ip(ip)
        except InvalidInput:
            return None
        if self.exempt(ip):
            return None                       # access.ban_exempt: failures are not counted
        return self.failures_dir / f"{_file_stem(ip)}.log"

    def _append(self, path, line: str) -> None:
        """One small O_APPEND write (never mixed with another's); on a full or read-only
        disk the line is held in memory and still counts."""
        def append():
            self.failures_dir.mkdir(parents=True, exist_ok=True)
            while True:
                fd = nofollow.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
                try:
                    # shared with other appenders, exclusive with a compaction: a line is
                    # never written into a file a compaction has just replaced
                    fcntl.flock(fd, fcntl.LOCK_SH)
                    if _same_file(fd, path):
                        os.write(fd, f"{line}\n".encode())
                        return
                finally:
                    os.close(fd)
        if not self._written(append):
            held = self._held_failures.setdefault(str(path), [])
            held.append(line)
            del held[:-1000]

    def _recent(self, path, now: float) -> int:
        """Failures within the window: the attempt lines no 'ok' line cancels."""
        written: list[str] = []
        with contextlib.suppress(OSError):
            written = nofollow.read_text(path, "replace").splitlines()
        failures = self._open_attempts(written + self._held_failures.get(str(path), []), now)
        if len(written) > 256 and len(written) > 2 * len(failures):
            # mostly logins that succeeded, or old lines: keep only what still counts
            self._written(lambda: self._compact(path, now))
        return len(failures)

    def _open_attempts(self, lines: list[str], now: float) -> list[str]:
        cutoff = now - self.settings.auth.ban_window_minutes * 60
        open_attempts: dict[str, list[str]] = {}     # "stamp protocol" -> its lines
        for line in lines:
            stamp, _, rest = line.partition(" ")
            with contextlib.suppress(ValueError):
                if float(stamp) < cutoff:
                    continue
                if rest.endswith(" ok"):
                    pending = open_attempts.get(f"{stamp} {rest[:-3]}")
                    if pending:
                        pending.pop()
                else:
                    open_attempts.setdefault(line, []).append(line)
        return [line for same in open_attempts.values() for line in same]

    def _compact(self, path, now: float) -> None:
        """Rewrite the file with only the attempts still open, holding it exclusively so
        no appender's line (an attempt, or the 'ok' that cancels one) is lost meanwhile."""
        fd = nofollow.open_file(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not _same_file(fd, path):
                return                  # another process compacted it first
            with os.fdopen(os.dup(fd), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            kept = self._open_attempts(lines, now)[-1000:]
            atomic_write(path, "".join(f"{line}\n" for line in kept))
        finally:
            os.close(fd)
