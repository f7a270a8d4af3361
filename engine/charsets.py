"""Decoding text in the charset a message names, whatever it names.

A charset comes from the sender (Content-Type's charset=, RFC 2047 encoded-words), so it
may be anything: unknown, a name with a NUL in it, or a name Python's codec registry
knows but that is no MIME charset and cannot decode with errors="replace" (idna,
undefined, punycode, base64, rot13 ...). As Dovecot does, such text is read as UTF-8
with the invalid bytes replaced: decoding never fails, and ASCII text stays searchable.
Every charset decode of message content goes through here.
"""
from __future__ import annotations

import codecs
import email.errors
import email.header
import functools

FALLBACK = "utf-8"
MAX_NAME = 40        # longer "charset names" are not looked up (nor cached)
# Codecs Python has that are not charsets of text on the wire: never used to decode mail.
_NOT_CHARSETS = frozenset({"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape",
                           "unicode_escape", "raw_unicode_escape", "mbcs", "oem"})


@functools.lru_cache(maxsize=256)
def _checked(name: str) -> str:
    try:
        info = codecs.lookup(name)
        if info.name in _NOT_CHARSETS:
            return FALLBACK
        b"probe \xff\xfe\x80+-".decode(info.name, "replace")   # bytes-to-bytes codecs raise here
    except Exception:  # noqa: BLE001 - LookupError, ValueError (NUL), UnicodeError, TypeError ...
        return FALLBACK
    return info.name


def usable(charset: str | None) -> str:
    """A codec name that decodes any bytes with errors="replace": the charset asked for
    when it is a real one, else UTF-8."""
    if not charset or len(charset) > MAX_NAME:
        return FALLBACK
    return _checked(charset.strip().lower())


def decode(data: bytes, charset: str | None) -> str:
    """Bytes in a message's charset as text; never raises."""
    try:
        return data.decode(usable(charset), "replace")
    except Exception:  # noqa: BLE001 - a codec that passed the probe and still fails on this input
        return data.decode(FALLBACK, "replace")


def decode_words(text: str) -> str:
    """A header value with its RFC 2047 encoded-words decoded; never raises (a value
    whose words cannot be split is given as it is)."""
    try:
        chunks = [(chunk, usable(charset) if charset else None)
                  for chunk, charset in email.header.decode_header(text)]
        return str(email.header.make_header(chunks))
    except (email.errors.HeaderParseError, UnicodeError, LookupError, ValueError, TypeError):
        return text
