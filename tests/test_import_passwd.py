"""Accounts from a Dovecot passwd-file keep their passwords."""
from __future__ import annotations

import base64
import hashlib
import warnings

from engine import passwords
from engine import settings as settings_mod
from engine.directory import Directory
from conftest import run_cli
from helpers_import import target_root


def _ssha256(pw: str, salt: bytes = b"saltsalt") -> str:
    return "{SSHA256}" + base64.b64encode(hashlib.sha256(pw.encode() + salt).digest() + salt).decode()


def _sha512_crypt(pw: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(pw, crypt.mksalt(crypt.METHOD_SHA512))


def test_passwd_file_accounts_log_in_with_their_old_passwords(tmp_path):
    root = target_root(tmp_path / "root", "existing@old.example")
    pf = tmp_path / "passwd"
    pf.write_text(
        "# Dovecot passwd-file\n"
        f"alice:{_ssha256('alice-pass-1')}:1000:1000:Alice A,,,:/home/alice::\n"
        f"bob@old.example:{{SHA512-CRYPT}}{_sha512_crypt('bob-pass-12')}::::::\n"
        f"carol:{_sha512_crypt('carol-pass-1')}\n"
        "dave:{PLAIN}dave-pass-1::::::\n"
        "existing:{PLAIN}whatever::::::\n"
        "eve:plaintext-not-a-hash::::::\n"
        "mallory@other.example:{PLAIN}x::::::\n"
        "../../etc:{PLAIN}x::::::\n")
    r = run_cli(root, "import", "passwd-file", str(pf), "--domain", "old.example")
    assert r.code == 1                         # some lines failed, and say so
    assert "4 accounts imported, 1 skipped" in r.out and "3 failed" in r.out
    assert "passwd:7" in r.err and "passwd:9" in r.err
    directory = Directory.load(root, settings_mod.load(root.config_file))
    for user, pw in (("alice", "alice-pass-1"), ("bob", "bob-pass-12"), ("carol", "carol-pass-1"),
                     ("dave", "dave-pass-1")):
        acc = directory.login(f"{user}@old.example")
        assert acc is not None and passwords.verify(acc.password, pw), user
        assert not passwords.verify(acc.password, pw + "x")
    assert directory.login("alice@old.example").name == "Alice A"
    assert not (root.path.parent / "etc").exists()
    r = run_cli(root, "import", "passwd-file", str(pf), "--domain", "old.example")
    assert "0 accounts imported, 5 skipped" in r.out
    r = run_cli(root, "import", "passwd-file", str(pf), "--domain", "missing.example")
    assert r.code == 1 and "does not exist" in r.err
