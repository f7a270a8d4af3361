"""Auto-ban of IP addresses after repeated failed logins, shared by every protocol.

State lives in the root, so restarts, other server processes and `mailctl ban` see it:
  state/bans/<ip>.toml            one ban: ip, until, reason, protocol, created
  state/auth-failures/<ip>.log    one line per failed login: '<unix time> <protocol>'

Failures are appended with O_APPEND (one small write is atomic); a ban is one atomic
file write. Expired bans and failures are ignored and swept lazily.

When the state cannot be written (a full or read-only disk, any I/O error) the failures
and bans are kept in this process's memory instead, so a ban still applies here and a
login still gets its ordinary answer; the fault is logged once until a write works again.
"""
from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import time
import tomllib
from typing import Callable

import tomli_w

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
        until = max(self._active().get(ip, 0), self._held_bans.get(ip, 0))
        return until > self.clock()

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
        until = now + minutes * 60
        text = tomli_w.dumps({"ip": ip, "until": until, "created": now, "reason": reason, "protocol": protocol})

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

    def record_failure(self, ip: str, protocol: str) -> bool:
        """Note one failed login; True when this failure started a ban (blocking: run off the loop)."""
        auth = self.settings.auth
        try:
            ip = normalize_ip(ip)
        except InvalidInput:
            return False
        if auth.ban_after_failures <= 0:
            return False
        now = self.clock()
        path = self.failures_dir / f"{_file_stem(ip)}.log"
        line = f"{now:.3f} {protocol}"

        def append():
            self.failures_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        if not self._written(append):
            self._held_failures.setdefault(ip, []).append(line)
        cutoff = now - auth.ban_window_minutes * 60
        lines = self._held_failures.get(ip, [])
        with contextlib.suppress(OSError):
            lines = path.read_text("utf-8", "replace").splitlines() + lines
        recent = []
        for entry in lines:
            with contextlib.suppress(ValueError, IndexError):
                if float(entry.split()[0]) >= cutoff:
                    recent.append(entry)
        if ip in self._held_failures:   # only the window's failures stay in memory
            self._held_failures[ip] = [x for x in self._held_failures[ip] if x in recent][-1000:]
        if len(recent) >= auth.ban_after_failures:
            self.ban(ip, auth.ban_minutes,
                     f"{len(recent)} failed logins within {auth.ban_window_minutes:g} minutes", protocol)
            self._held_failures.pop(ip, None)
            with contextlib.suppress(OSError):
                os.unlink(path)
            return True
        if len(recent) > 1000:    # keep the file small for a patient attacker
            self._written(lambda: atomic_write(path, "\n".join(recent[-100:]) + "\n"))
        return False
