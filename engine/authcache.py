"""Recently verified logins, as Dovecot's auth_cache: an IMAP client that opens five
connections costs one argon2 verification, not five (each takes about 0.1 s of CPU).

Only successes are kept. The key is a keyed digest of the stored hash and the password,
so a changed password misses at once, and no password is held in memory.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from typing import Callable


class AuthCache:
    def __init__(self, ttl: float, max_entries: int = 10000, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    def _key(self, stored_hash: str, password: str) -> bytes:
        return hmac.new(self._secret, f"{stored_hash}\0{password}".encode("utf-8", "surrogatepass"),
                        hashlib.sha256).digest()

    def hit(self, stored_hash: str, password: str) -> bool:
        if self.ttl <= 0:
            return False
        key = self._key(stored_hash, password)
        expires = self._entries.get(key)
        if expires is None:
            return False
        if expires < self.clock():
            del self._entries[key]
            return False
        return True

    def add(self, stored_hash: str, password: str) -> None:
        if self.ttl <= 0:
            return
        self._entries[self._key(stored_hash, password)] = self.clock() + self.ttl
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
