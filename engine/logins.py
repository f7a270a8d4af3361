"""Checking a login so that guessing does not pay, for every protocol (Runtime.authenticate).

- Logins from one IP are checked a few at a time (auth.max_logins_in_flight_per_ip,
  counted across serving processes); the others wait their turn, so a hundred guesses
  sent at once meet the ban instead of all being checked before it.
- A login counts as failed from before its password is checked (Bans.begin_attempt).
- An unknown user, a disabled account or one without a password is checked against a
  dummy hash of the same scheme and cost, so the time taken does not tell which users
  exist.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import secrets

from . import passwords
from .authcache import AuthCache

SLOT_WAIT_S = 30.0          # a login that finds no free slot this long fails (temporarily)
_dummy_hash: str | None = None


def dummy_hash() -> str:
    """A hash of a random password, made as the directory's are (same argon2 cost)."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = passwords.hash_password(secrets.token_urlsafe(24))
    return _dummy_hash


class Logins:
    def __init__(self, runtime):
        self.rt = runtime
        self._local: dict[str, int] = {}       # logins in flight per IP without shared counts
        self._cache: AuthCache | None = None

    @contextlib.asynccontextmanager
    async def slot(self, ip: str):
        """Yields True once this login may be checked, False when none came free in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SLOT_WAIT_S
        key = f"logins in flight at {ip}"
        while True:
            # take first, then look: of two processes taking the last slot at once, both
            # see the other and at least one backs off
            if self._take(key, 1) <= self.rt.settings.auth.max_logins_in_flight_per_ip:
                break
            self._take(key, -1)
            if loop.time() > deadline:
                yield False
                return
            await asyncio.sleep(0.02 + random.random() * 0.03)
        try:
            yield True
        finally:
            self._take(key, -1)

    def _take(self, key: str, delta: int) -> int:
        shared = self.rt.sessions.shared
        if shared is not None:
            shared.adjust(key, delta)
            return shared.current(key)
        self._local[key] = self._local.get(key, 0) + delta
        return self._local.pop(key) if self._local[key] <= 0 else self._local[key]

    async def check(self, user: str, password: str, ip: str, protocol: str):
        """The Account when the login is good, else None (after the failure delay)."""
        rt = self.rt
        async with self.slot(ip) as free:
            if not free:
                rt.log.warning("%s: login for %r from %s: too many logins in flight", protocol, user[:100], ip)
                await rt.auth_delay()
                return None
            check, stamp = await rt.run_blocking(rt.bans.begin_attempt, ip, protocol)
            account = await self._verify(user, password) if check else None
            if account is not None:
                await rt.run_blocking(rt.bans.attempt_succeeded, ip, protocol, stamp)
                return account
            banned = await rt.run_blocking(rt.bans.attempt_failed, ip, protocol)
        rt.log.warning("%s: failed login for %r from %s%s", protocol, user[:100], ip,
                       " (now banned)" if banned else "" if check else " (not checked: too many failures)")
        rt.count("auth_failures")
        await rt.auth_delay()
        return None

    def cache(self) -> AuthCache:
        """One cache per process; its lifetime follows auth.cache_seconds."""
        ttl = float(self.rt.settings.auth.cache_seconds)
        if self._cache is None or self._cache.ttl != ttl:
            self._cache = AuthCache(ttl)
        return self._cache

    async def _verify(self, user: str, password: str):
        rt = self.rt
        directory = rt.directory
        account = directory.login(user)
        usable = account is not None and account.enabled and bool(account.password)
        stored = account.password if usable else dummy_hash()
        cache = self.cache()
        ok = usable and cache.hit(stored, password)
        if not ok:
            ok = await rt.run_blocking(passwords.verify, stored, password) and usable
            if ok:
                cache.add(stored, password)
        domain = directory.domain(account.domain) if ok else None
        return account if ok and domain is not None and domain.enabled else None
