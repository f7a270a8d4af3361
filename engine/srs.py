"""The Sender Rewriting Scheme's addresses, as libsrs2, postsrsd and Mail::SRS (Guarded)
write them, so a bounce to an address another SRS forwarder made, or one of ours sent
through one, reverses the same way:

    SRS0=HHHH=TT=orig-domain=orig-local@our-domain           a forwarded sender
    SRS1=HHHH=first-forwarder==HHHH=TT=orig-domain=orig-local@our-domain
                                                             an SRS0 sender forwarded again

HHHH: HMAC-SHA1 under the secret of the lower-cased fields (SRS0: timestamp, domain,
local; SRS1: forwarder, the rest), base64, the first `hash_length` characters; compared
without case, as some MTAs change the case of local parts. TT: the day (Unix time / 86400)
modulo 1024 in two base32 characters; too old after max_age_days, and one from the future
counts as 1024 days old. Pure functions: no file, no clock of their own.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from .addresses import SENDER_LOCAL, normalize_domain
from .errors import InvalidInput

SEP = "="
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
DAY = 86400
SLOTS = len(BASE32) ** 2            # two characters: the stamp wraps every 1024 days
MAX_INPUT = 512                     # longer is not an address we made (RFC 5321 path: 256)
MAX_ORIGINAL = 254                  # an address we give back
_TAG = re.compile(r"srs([01])[=+-]", re.IGNORECASE)     # libsrs2 accepts any of its separators


class SRSError(ValueError):
    """An SRS address that does not reverse: the reason, for the log (never for the client)."""


@dataclass(frozen=True)
class Signer:
    secrets: tuple[bytes, ...]      # the first signs; every one verifies (rotation)
    hash_length: int = 4
    max_age_days: int = 21


def tag_of(local: str) -> int | None:
    """0 or 1 when local is an SRS0 / SRS1 local part, else None."""
    m = _TAG.match(local)
    return int(m.group(1)) if m else None


def make_hash(secret: bytes, *fields: str) -> str:
    mac = hmac.new(secret, b"", hashlib.sha1)
    for f in fields:
        mac.update(f.lower().encode("utf-8", "surrogateescape"))
    return base64.b64encode(mac.digest()).decode("ascii")


def hash_ok(signer: Signer, given: str, *fields: str) -> bool:
    """As libsrs2: at least hash_length characters, the same as the start of the hash
    under any of the secrets, ignoring case."""
    if not signer.hash_length <= len(given) <= 28:
        return False
    given = given.lower()
    return any(hmac.compare_digest(make_hash(s, *fields)[:len(given)].lower().encode(), given.encode())
               for s in signer.secrets)


def stamp(now: float) -> str:
    day = int(now // DAY)
    return BASE32[(day >> 5) & 31] + BASE32[day & 31]


def stamp_ok(text: str, now: float, max_age_days: int) -> bool:
    if len(text) != 2:
        return False
    then = 0
    for c in text.upper():
        i = BASE32.find(c)
        if i < 0:
            return False
        then = then * 32 + i
    today = int(now // DAY) % SLOTS
    while today < then:
        today += SLOTS
    return today <= then + max_age_days


def forward(signer: Signer, sender: str, domain: str, now: float) -> str:
    """The sender a copy forwarded by `domain` goes out with. An SRS0 or SRS1 sender
    (forwarded to us by another forwarder) becomes SRS1, naming the first forwarder,
    so a bounce goes back through it."""
    local, _, host = sender.rpartition("@")
    key = signer.secrets[0]
    tag = tag_of(local)
    if tag == 1:
        parts = local[5:].split(SEP, 2)
        if len(parts) == 3 and parts[1] and parts[2]:
            _, first, rest = parts
            return f"SRS1{SEP}{make_hash(key, first, rest)[:signer.hash_length]}{SEP}{first}{SEP}{rest}@{domain}"
    elif tag == 0:
        rest = local[4:]                   # keeps its separator: the "==" of SRS1
        return f"SRS1{SEP}{make_hash(key, host, rest)[:signer.hash_length]}{SEP}{host}{SEP}{rest}@{domain}"
    ts = stamp(now)
    h = make_hash(key, ts, host, local)[:signer.hash_length]
    return f"SRS0{SEP}{h}{SEP}{ts}{SEP}{host}{SEP}{local}@{domain}"


def reverse(signer: Signer, address: str, now: float) -> str:
    """The address an SRS address at one of our domains stands for (SRS1: the first
    forwarder's SRS0 address). Raises SRSError when it is not one we made or too old."""
    if len(address) > MAX_INPUT:
        raise SRSError("too long")
    local, at, _ = address.rpartition("@")
    tag = tag_of(local) if at else None
    if tag is None:
        raise SRSError("not an SRS address")
    if tag == 1:
        parts = local[5:].split(SEP, 2)
        if len(parts) != 3 or not all(parts):
            raise SRSError("malformed SRS1 address")
        given, host, rest = parts
        if not hash_ok(signer, given, host, rest):
            raise SRSError("bad hash")
        return original(f"SRS0{rest}", host)
    parts = local[5:].split(SEP, 3)
    if len(parts) != 4 or not all(parts):
        raise SRSError("malformed SRS0 address")
    given, ts, host, user = parts
    if not hash_ok(signer, given, ts, host, user):
        raise SRSError("bad hash")
    if not stamp_ok(ts, now, signer.max_age_days):
        raise SRSError("expired")
    return original(user, host)


def original(local: str, host: str) -> str:
    """local@host when it is an address we may send to (no route, no IP literal). Its
    local part may hold '/' (an SRS1's inner base64 hash, a sender's own): it is a remote
    recipient, never a path."""
    if not SENDER_LOCAL.match(local):
        raise SRSError("bad local part")
    try:
        domain = normalize_domain(host)
    except InvalidInput:
        raise SRSError("bad domain") from None
    address = f"{local}@{domain}"
    if len(address) > MAX_ORIGINAL:
        raise SRSError("too long")
    return address
