"""The base subject of RFC 5256 §2.1 (SORT SUBJECT, THREAD's subject gathering) and
the comparable form of a sort key, one place for both.

Keys are compared as Dovecot compares them: RFC 2047 words decoded, then every character
in decomposed titlecase (RFC 5051's i;unicode-casemap), so "re:" and "RE:" are one
leader and "a" sorts after "_" (upper case, not lower).
"""
from __future__ import annotations

import binascii
import re
import unicodedata

from .. import charsets

MAX_SUBJECT = 4096  # characters looked at: a key longer than this sorts by its start

_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_QP_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_SPACE = re.compile(r"[ \t\r\n]+")


def decode_words(text: str) -> str:
    """RFC 2047 encoded-words decoded; white space between two adjacent words dropped
    (RFC 2047 §6.2); a word that does not decode is kept as written. Never raises."""
    if "=?" not in text:
        return text
    out = []
    pos = 0
    after_word = False
    for m in _WORD.finditer(text):
        between = text[pos:m.start()]
        decoded = _decode_word(m.group(1), m.group(2), m.group(3))
        if decoded is None:
            out.append(text[pos:m.end()])
            after_word = False
        else:
            if not (after_word and not between.strip(" \t\r\n")):
                out.append(between)
            out.append(decoded)
            after_word = True
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def _decode_word(charset: str, encoding: str, data: str) -> str | None:
    charset = charset.split("*", 1)[0]          # RFC 2231 language suffix
    try:
        raw = data.encode("ascii")
        if encoding in "bB":
            raw = binascii.a2b_base64(raw + b"=" * (-len(raw) % 4))
        else:
            raw = _QP_HEX.sub(lambda h: bytes([int(h.group(1), 16)]), raw.replace(b"_", b" "))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    return charsets.decode(raw, charset)


def casemapped(text: str) -> str:
    """Decomposed titlecase, character by character (ASCII: upper case)."""
    if text.isascii():
        return text.upper()
    out = []
    for ch in text:
        t = ch.title()
        out.append(t if len(t) == 1 else ch.upper() if len(ch.upper()) == 1 else ch)
    return unicodedata.normalize("NFKD", "".join(out))


def sort_text(raw: bytes | None) -> str:
    """A header value as a sort key: decoded and case-mapped."""
    if raw is None:
        return ""
    return casemapped(decode_words(raw.decode("utf-8", "replace")[:MAX_SUBJECT]))


def base_subject(raw: bytes | str | None) -> tuple[str, bool]:
    """(the base subject, case-mapped; whether a Re:/Fwd: leader or (fwd) trailer or a
    [fwd: ...] wrapper was removed) of a Subject field's value."""
    if raw is None:
        return "", False
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    # (1) decode, then every run of white space one space
    text = _SPACE.sub(" ", casemapped(decode_words(text[:MAX_SUBJECT])))
    reply = False
    while True:
        # (2) trailers: "(fwd)" and white space at the end
        while True:
            if text.endswith(" "):
                text = text[:-1]
            elif text.endswith("(FWD)"):
                text, reply = text[:-5], True
            else:
                break
        # (3)-(5) leaders and blobs at the start, until none is left
        while True:
            text, found, leader = _remove_leader(text)
            reply = reply or leader
            blob_end = _blob_end(text)
            if blob_end is not None and blob_end < len(text):
                text, found = text[blob_end:], True
            if not found:
                break
        # (6) "[fwd: ...]" around the whole: unwrapped, and again from (2)
        if text.startswith("[FWD:") and text.endswith("]"):
            text, reply = text[5:-1], True
            continue
        return text, reply


def _blob_end(text: str, pos: int = 0) -> int | None:
    """Where a subj-blob ("[" no brackets "]" and one optional space) at pos ends."""
    if not text.startswith("[", pos):
        return None
    i = pos + 1
    n = len(text)
    while i < n and text[i] not in "[]":
        i += 1
    if i >= n or text[i] != "]":
        return None
    i += 1
    return i + 1 if text.startswith(" ", i) else i


def _remove_leader(text: str) -> tuple[str, bool, bool]:
    """(text, removed anything, removed a Re/Fwd leader): subj-leader at the start."""
    found = False
    if text.startswith(" "):
        text, found = text[1:], True
    pos = 0
    while text.startswith("[", pos):
        end = _blob_end(text, pos)
        if end is None:
            return text, found, False
        pos = end
    if text.startswith("RE", pos):
        pos += 2
    elif text.startswith("FWD", pos):
        pos += 3
    elif text.startswith("FW", pos):
        pos += 2
    else:
        return text, found, False
    if text.startswith(" ", pos):
        pos += 1
    if text.startswith("[", pos):
        end = _blob_end(text, pos)
        if end is None:
            return text, found, False
        pos = end
    if not text.startswith(":", pos):
        return text, found, False
    return text[pos + 1:], True, True
