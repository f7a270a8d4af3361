"""Password hashes: argon2id for everything we write; Dovecot-style {SCHEME}hash accepted
on import so users keep their passwords after a migration."""
from __future__ import annotations

import base64
import hashlib
import hmac

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .errors import InvalidInput

_hasher = PasswordHasher()   # argon2id with the library's recommended cost

MIN_LENGTH = 8
MAX_LENGTH = 1024


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"password too short: use at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"password too long: at most {MAX_LENGTH} characters")
    if any(c in password for c in "\x00\r\n"):
        raise InvalidInput("password contains NUL or line breaks")


def hash_password(password: str) -> str:
    check_strength(password)
    return _hasher.hash(password)


def is_hash(value: str) -> bool:
    """Whether value looks like a hash we can verify (never a plain password)."""
    return value.startswith("$argon2") or (value.startswith("{") and "}" in value)


_SCHEMES = {"ARGON2ID", "ARGON2I", "SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "CRYPT", "BLF-CRYPT", "SHA", "SHA1",
            "SHA256", "SHA512", "SSHA", "SSHA256", "SSHA512", "PLAIN-MD5", "MD5", "PLAIN", "CLEARTEXT"}


def login_problem(stored: str) -> str | None:
    """Why an account with this stored value cannot log in (None when it can)."""
    if not stored:
        return "no password set"
    if stored.startswith("$argon2"):
        return None
    if stored.startswith("{") and stored[1:].partition("}")[0].upper() in _SCHEMES:
        return None
    return "password is not a hash"


def verify(stored: str, password: str) -> bool:
    """Check password against a stored hash; never raises for a bad hash."""
    if not stored or not isinstance(password, str):
        return False
    if stored.startswith("$argon2"):
        try:
            return _hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    if stored.startswith("{"):
        scheme, _, value = stored[1:].partition("}")
        return _verify_scheme(scheme.upper(), value, password)
    return False


def _verify_scheme(scheme: str, value: str, password: str) -> bool:
    pw = password.encode("utf-8")
    if scheme in ("ARGON2ID", "ARGON2I"):
        return verify(value, password)
    if scheme in ("SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "CRYPT", "BLF-CRYPT"):
        return _crypt_verify(value, password)
    digests = {"SHA": "sha1", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512",
               "SSHA": "sha1", "SSHA256": "sha256", "SSHA512": "sha512", "PLAIN-MD5": "md5", "MD5": "md5"}
    if scheme in ("PLAIN", "CLEARTEXT"):
        return hmac.compare_digest(value.encode(), pw)
    if scheme in digests:
        algo = digests[scheme]
        size = hashlib.new(algo).digest_size
        try:
            raw = bytes.fromhex(value) if len(value) == size * 2 else base64.b64decode(value, validate=True)
        except ValueError:
            return False
        digest, salt = raw[:size], raw[size:]
        return hmac.compare_digest(hashlib.new(algo, pw + salt).digest(), digest)
    return False


def _crypt_verify(value: str, password: str) -> bool:
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
    except ImportError:      # Python 3.13 removed crypt; such hashes need re-setting
        return False
    try:
        return hmac.compare_digest(crypt.crypt(password, value) or "", value)
    except (OSError, ValueError):
        return False
