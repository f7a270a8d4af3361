"""One DKIM signature verified (RFC 6376 §6.1, RFC 8463 for ed25519): the hot path of
the inbound checks, run for every signature of every message.

dkimpy's own `DKIM.verify` decides exactly what we want, but three of its steps cost more
than the rest of the checks together, with no hook to replace them: the RSA arithmetic in
pure Python (about 0.35 ms a signature on a 2-CPU machine), a regex split of the whole
message into lines, and a b= remover with nested quantifiers (40 us). So the verdict is
made here from dkimpy's public pieces (tag lists, the signature field checks, key
records, header selection, canonicalization) in dkimpy's order, and only those three
steps are done differently: the message is split once at the end of its header, the
signature is checked by `cryptography` (OpenSSL), and b= is emptied by a plain regex of
the same language. tests/test_fuzz_dkim_verify.py compares every verdict with dkimpy's
over generated, signed and damaged messages.

Errors are dkimpy's exceptions, raised where dkimpy raises them, so a caller tells
"fail" from "permerror" as it did with dkimpy.
"""
from __future__ import annotations

import base64
import functools
import re
from dataclasses import dataclass

import dkim
import dkim.util
import nacl.exceptions
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

_FIELD_NAME = re.compile(rb"([\x21-\x7e]+?):")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_LONE_LF = re.compile(rb"(?<!\r)\n")
_H_SEPARATOR = re.compile(rb"\s*:\s*")
_WSP = re.compile(rb"\s+")
# dkim.RE_BTAG's language (folding whitespace is any whitespace run there) without its
# nested quantifiers, which cost ~40 us a signature: the b= value emptied (RFC 6376 §3.7)
_B_VALUE = re.compile(rb"([;\s]b\s*=)(?:[\sa-zA-Z0-9+/=]*[a-zA-Z0-9+/=])?(?:\r?\n\Z)?")
_PREHASHED = {"sha256": utils.Prehashed(hashes.SHA256()), "sha1": utils.Prehashed(hashes.SHA1())}


@dataclass
class Message:
    """A message as dkimpy's rfc822_parse sees it: header fields as [name, value] with
    the value's line ends made CRLF, and the body with CRLF line ends."""
    headers: list[list[bytes]]
    body: bytes

    def signatures(self) -> list[list[bytes]]:
        return [f for f in self.headers if f[0].lower() == b"dkim-signature"]


def parse(message: bytes) -> Message:
    """Raises dkim.MessageFormatError (or IndexError for a folded first line) where
    rfc822_parse would."""
    if message.startswith((b"\n", b"\r\n")):
        head, body = b"", message[message.index(b"\n") + 1:]
    else:
        blank = _BLANK_LINE.search(message)
        head, body = (message, b"") if blank is None else (message[:blank.start() + 1], message[blank.end():])
    headers: list[list[bytes]] = []
    for line in head.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            continue            # only the end of the last field can be empty here
        if line[0] in (0x09, 0x20):
            headers[-1][1] += line + b"\r\n"
            continue
        m = _FIELD_NAME.match(line)
        if m is not None:
            headers.append([m.group(1), line[m.end():] + b"\r\n"])
        elif not line.startswith(b"From "):
            raise dkim.MessageFormatError("Unexpected characters in RFC822 header")
    if body.count(b"\n") != body.count(b"\r\n"):        # a regex pass only when needed
        body = _LONE_LF.sub(b"\r\n", body)
    return Message(headers, body)


@functools.lru_cache(maxsize=256)
def _key(record: bytes) -> tuple:
    """(key object, bits, k=, tlsrpt) of a key record, made once: the same few keys sign
    most mail. Keyed by the record's bytes, so a changed record is a new entry."""
    pk, keysize, ktag, tlsrpt = dkim.evaluate_pk(b"", record)
    if ktag == b"rsa":
        try:
            pk = rsa.RSAPublicNumbers(pk["publicExponent"], pk["modulus"]).public_key()
        except (ValueError, TypeError, OverflowError) as e:
            raise dkim.KeyFormatError(f"unusable RSA public key ({type(e).__name__})") from None
    return pk, keysize, ktag, tlsrpt


def verify(message: Message, field: list[bytes], dnsfunc, minkey: int = 1024, timeout: float = 5,
           sig: dict | None = None) -> bool:
    """Does this DKIM-Signature field of the message verify? False for a signature that
    does not (and, as in dkimpy, for a key that cannot be had or used); dkim.DKIMException
    for a malformed signature, a body hash mismatch or a key too short. sig: the field's
    tags when the caller has parsed them already."""
    if sig is None:
        try:
            sig = dkim.util.parse_tag_value(field[1])
        except dkim.util.InvalidTagValueList as e:
            raise dkim.MessageFormatError(e) from None
    dkim.validate_signature_fields(sig)
    include = [x.lower() for x in _H_SEPARATOR.split(sig[b"h"])]
    try:
        record = dnsfunc(sig[b"s"] + b"._domainkey." + sig[b"d"] + b".", timeout=timeout)
    except dkim.DnsTimeoutError:
        return False
    if not record:
        return False
    try:
        pk, keysize, ktag, tlsrpt = _key(record if isinstance(record, bytes) else record.encode("ascii"))
    except (dkim.KeyFormatError, ValueError, UnicodeError):      # binascii.Error is a ValueError
        return False
    if tlsrpt:
        raise dkim.ValidationError("Message is not tlsrpt and Service Type is tlsrpt")
    try:
        policy = dkim.CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
    except dkim.InvalidCanonicalizationPolicyError as e:
        raise dkim.MessageFormatError(f"invalid c= value: {e.args[0]}") from None
    hasher = dkim.HASH_ALGORITHMS[sig[b"a"]]

    body = policy.canonicalize_body(message.body)
    if b"l" in sig:
        body = body[:int(sig[b"l"])]
    try:
        bh = base64.b64decode(_WSP.sub(b"", sig[b"bh"]))
    except ValueError as e:
        raise dkim.MessageFormatError(str(e)) from None
    if hasher(body).digest() != bh:
        raise dkim.ValidationError("body hash mismatch")

    if b"from" in include:          # an added From breaks the signature (dkimpy bug#644046)
        include.append(b"from")
    h = hasher()
    for name, value in policy.canonicalize_headers(dkim.select_headers(message.headers, include)):
        h.update(name + b":" + value)
    [(name, value)] = policy.canonicalize_headers([(field[0], _B_VALUE.sub(b"\\1", field[1]))])
    h.update(name + b":" + value.rstrip())      # the signature's own field: no line end
    signature = base64.b64decode(_WSP.sub(b"", sig[b"b"]))
    if ktag == b"ed25519":
        try:
            pk.verify(h.digest(), signature)
            return True
        except nacl.exceptions.BadSignatureError:
            return False
        except ValueError as e:             # not 64 bytes: an RSA signature with an ed25519 key
            raise dkim.KeyFormatError(f"signature unusable with the key ({type(e).__name__})") from None
    if ktag != b"rsa":
        raise dkim.UnknownKeyTypeError(ktag)
    if keysize < minkey:
        raise dkim.KeyFormatError(f"public key too small: {keysize}")
    try:
        pk.verify(signature, h.digest(), padding.PKCS1v15(), _PREHASHED[h.name])
        return True
    except InvalidSignature:
        return False
