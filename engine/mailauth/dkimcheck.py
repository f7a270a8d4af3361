"""DKIM (RFC 6376) of every signature, ed25519 included (each verified by dkimverify.py),
and ARC (RFC 8617) chain validation, with dkimpy.

dkimpy answers a bare True/False for a signature and swallows its DNS errors, so our key
lookup notes what happened (no key, DNS failure): a DNS failure is temperror, a missing
or unusable key or a malformed signature permerror, a signature that does not verify fail.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import dkim
import dkim.util

from . import dkimverify, dnslookup

MAX_SIGNATURES = 8           # more are not looked at (OpenDKIM's MaximumSignaturesToVerify is 3)
MIN_RSA_BITS = 1024          # RFC 8301: shorter RSA keys are refused
_log = logging.getLogger("mailctl")
_quiet = logging.getLogger("mailctl.dkimpy")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


@dataclass(frozen=True)
class DKIMResult:
    result: str                  # pass, fail, neutral, temperror, permerror
    domain: str = ""             # d=
    selector: str = ""           # s=
    algorithm: str = ""          # a=
    b: str = ""                  # the first characters of b= (tells signatures apart)
    reason: str = ""


@dataclass(frozen=True)
class ARCResult:
    result: str                  # none, pass, fail
    instance: int = 0            # the newest i=
    domain: str = ""             # its sealer (d= of the newest ARC-Seal)
    reason: str = ""


class _KeyLookup:
    """dkimpy's dnsfunc over our resolver, remembering whether DNS failed or had no key."""

    def __init__(self, resolver):
        self.resolver = resolver
        self.temp = False
        self.missing = False

    def __call__(self, name, timeout=5):
        name = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        try:
            records = dnslookup.txt(self.resolver, name.rstrip("."))
        except dnslookup.TempDNSError:
            self.temp = True
            raise dkim.DnsTimeoutError(name) from None
        if not records:
            self.missing = True
            return None
        # several records: the one that says it is a DKIM key, else the first
        return next((r for r in records if r.lstrip().startswith(b"v=DKIM1")), records[0])


def check_dkim(resolver, message: bytes, timeout: float = 5.0) -> list[DKIMResult]:
    """One result per DKIM-Signature (the first MAX_SIGNATURES), top to bottom."""
    try:
        parsed = dkimverify.parse(message)
    except Exception as e:  # noqa: BLE001 - an unparsable message: nothing to verify
        _log.info("dkim: message not parsable: %s", type(e).__name__)
        return []
    out = []
    for field in parsed.signatures()[:MAX_SIGNATURES]:
        try:
            sig = dkim.util.parse_tag_value(field[1])
        except Exception:  # noqa: BLE001 - malformed: no tags to show, verify says why
            sig = None
        tags = {_text(k): _text(v) for k, v in (sig or {}).items()}
        base = dict(domain=tags.get("d", ""), selector=tags.get("s", ""), algorithm=tags.get("a", ""),
                    b="".join(tags.get("b", "").split())[:8])
        lookup = _KeyLookup(resolver)
        try:
            ok = dkimverify.verify(parsed, field, lookup, MIN_RSA_BITS, timeout, sig)
        except dkim.DKIMException as e:
            if str(e).startswith("body hash mismatch"):     # dkimpy's ValidationError for it
                out.append(DKIMResult("fail", **base, reason="body hash did not verify"))
            else:
                out.append(DKIMResult("permerror", **base, reason=_short(e)))
            continue
        except Exception as e:  # noqa: BLE001 - hostile input must never crash the stage
            out.append(DKIMResult("permerror", **base, reason=f"unusable signature ({type(e).__name__})"))
            continue
        if ok:
            out.append(DKIMResult("pass", **base))
        elif lookup.temp:
            out.append(DKIMResult("temperror", **base, reason="key lookup failed"))
        elif lookup.missing:
            out.append(DKIMResult("permerror", **base, reason="no key for signature"))
        else:
            out.append(DKIMResult("fail", **base, reason="signature did not verify"))
    return out


_ARC_FIELD = re.compile(rb"(?:\A|\n)arc-[a-z-]{1,30}[ \t]*:", re.I)


def has_arc_fields(message: bytes) -> bool:
    """Does the header hold any ARC-* field? Without one the chain is "none" (RFC 8617
    §5.2), and dkimpy would parse the whole message again to say so."""
    end = message.find(b"\n\r\n")
    if end < 0:
        end = message.find(b"\n\n")
    return _ARC_FIELD.search(message if end < 0 else message[:end + 1]) is not None


def check_arc(resolver, message: bytes, timeout: float = 5.0) -> ARCResult:
    if not has_arc_fields(message):
        return ARCResult("none")
    lookup = _KeyLookup(resolver)
    try:
        cv, results, reason = dkim.ARC(message, logger=_quiet, minkey=MIN_RSA_BITS,
                                       timeout=timeout).verify(dnsfunc=lookup)
    except Exception as e:  # noqa: BLE001 - a broken chain is a failed chain, never a crash
        cv, results, reason = dkim.CV_Fail, [], _short(e)
    if cv == dkim.CV_None:
        return ARCResult("none")
    newest = results[0] if results else {}
    instance = int(newest.get("instance", 0) or 0)
    sealer = _text(newest.get("as-domain", b""))
    if cv == dkim.CV_Pass:
        return ARCResult("pass", instance, sealer)
    if lookup.temp:
        reason = "key lookup failed (temporary)"
    return ARCResult("fail", instance, sealer, _text(reason))


def _text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _short(e: Exception) -> str:
    return " ".join(str(e).split())[:120] or type(e).__name__
