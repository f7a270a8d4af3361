"""The login cache: repeated logins skip the slow hash, a changed password does not hit."""
from __future__ import annotations

import asyncio
import time

from engine.authcache import AuthCache
from engine import directory_edit, passwords
from engine.runtime import Runtime
from helpers_server import make_root


def test_cache_hits_expire_and_never_match_another_password():
    now = [0.0]
    cache = AuthCache(ttl=10, clock=lambda: now[0])
    cache.add("$hash1", "right-password")
    assert cache.hit("$hash1", "right-password")
    assert not cache.hit("$hash1", "wrong-password")
    assert not cache.hit("$hash2", "right-password")       # the password was changed
    now[0] = 11
    assert not cache.hit("$hash1", "right-password")
    assert not AuthCache(ttl=0).hit("$hash1", "x")


def test_runtime_login_uses_the_cache_and_sees_password_changes(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": "alice-password-1"})
    rt = Runtime.for_tests(root)

    async def login(pw):
        return await rt.authenticate("alice@example.com", pw, "127.0.0.1", "imap")

    async def main():
        t = time.perf_counter()
        assert await login("alice-password-1") is not None
        first = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(20):
            assert await login("alice-password-1") is not None
        repeated = (time.perf_counter() - t) / 20
        assert repeated < first / 5, (first, repeated)
        directory_edit.set_account(root, rt.settings, "alice@example.com",
                                   password=passwords.hash_password("new-password-22"))
        rt.reload()
        assert await login("alice-password-1") is None
        assert await login("new-password-22") is not None
    asyncio.run(main())
