"""Auto-ban of IP addresses after repeated failed logins, shared by every protocol.

State lives in the root, so restarts, other server processes and `mailctl ban` see it:
  state/bans/<ip>.toml            one ban: ip, until, reason, protocol, created
  state/auth-failures/<ip>.log    one line per failed login: '<unix time> <protocol>'

Failures are appended with O_APPEND (one small write is atomic); a ban is one atomic
file write. Expired bans and failures are ignored and swept lazily.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import time
import tomllib
from typing import Callable

import tomli_w

from .errors import InvalidInput, NotFound
from .root import Root, atomic_write, temp_name


def normalize_ip(ip: str) -> str:
    """A canonical text form; refuses anything that is not an IP address (it becomes a file name)."""
    try:
        addr = ipaddress.ip_address(str(ip).strip().strip("[]"))
    except ValueError:
        raise InvalidInput(f"{ip!r} is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return str(addr)


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
        self._cache: dict[str, float] = {}

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
                data = tomllib.loads(open(e.path, encoding="utf-8").read())
                out[normalize_ip(data["ip"])] = data
        return out

    def _active(self) -> dict[str, float]:
        """ip -> until, cached while the directory is unchanged (a stat per check)."""
        try:
            st = os.stat(self.dir)
            key = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            return {}
        if key != self._cache_key:
            self._cache = {ip: float(d.get("until", 0)) for ip, d in self._load_all().items()}
            self._cache_key = key
        return self._cache

    def is_banned(self, ip: str) -> bool:
        try:
            ip = normalize_ip(ip)
        except InvalidInput:
            return False
        until = self._active().get(ip)
        return until is not None and until > self.clock()

    def list(self) -> list[dict]:
        now = self.clock()
        rows = []
        for ip, d in sorted(self._load_all().items()):
            until = float(d.get("until", 0))
            if until <= now:
                continue
            rows.append({"ip": ip, "until": until, "remaining_s": int(until - now),
                         "reason": d.get("reason", ""), "protocol": d.get("protocol", ""),
                         "created": float(d.get("created", 0))})
        return rows

    # -- changing --
    def ban(self, ip: str, minutes: float, reason: str, protocol: str = "") -> None:
        ip = normalize_ip(ip)
        now = self.clock()
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.dir / f"{_file_stem(ip)}.toml", tomli_w.dumps(
            {"ip": ip, "until": now + minutes * 60, "created": now, "reason": reason, "protocol": protocol}))
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
                with contextlib.suppress(FileNotFoundError):
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
        return self.failures_dir / f"{_file_stem(ip)}.log"

    def _append(self, path, line: str) -> None:
        self.failures_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(fd, f"{line}\n".encode())      # one small O_APPEND write: never mixed
        finally:
            os.close(fd)

    def _recent(self, path, now: float) -> int:
        """Failures within the window: the attempt lines no 'ok' line cancels."""
        cutoff = now - self.settings.auth.ban_window_minutes * 60
        open_attempts: dict[str, list[str]] = {}     # "stamp protocol" -> its lines
        lines = 0
        with contextlib.suppress(OSError):
            for line in path.read_text("utf-8", "replace").splitlines():
                lines += 1
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
        failures = [line for same in open_attempts.values() for line in same]
        if lines > 256 and lines > 2 * len(failures):
            # mostly logins that succeeded, or old lines: keep only what still counts (an
            # attempt in flight now may lose its line; it then cancels a failure: harmless).
            # Not fsync'd: after a crash, at worst some failures are forgotten.
            tmp = temp_name(path)
            tmp.write_text("".join(f"{line}\n" for line in failures[-1000:]), "utf-8")
            os.replace(tmp, path)
        return len(failures)
