"""IMAP URLs (RFC 5092) naming a message or a part of one on this server, as CATENATE
(RFC 4469) takes them. A URL is client input: it is checked character by character and
only ever turned into a mailbox name (which then passes the same checks as SELECT), a
UID and a section, never into a path.

    imap://user@host/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=1.2/;PARTIAL=0.100
    /INBOX;UIDVALIDITY=7/;UID=20/;SECTION=1.2         (absolute path: this server)
    ;UID=20/;SECTION=TEXT                               (relative: the selected mailbox)

URLAUTH (;EXPIRE=, ;URLAUTH=) and message lists (?search) are not taken.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_URL = 2048
MAX_SECTION_DEPTH = 32

# RFC 5092 bchar (achar / ":" / "@" / "/" and %XX): what may appear between the parts
_BCHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*", re.ASCII)
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_SERVER = re.compile(r"imap://(?:([^@/;]+)@)?[A-Za-z0-9.\-\[\]:]+/", re.ASCII | re.IGNORECASE)
_MAILBOX_PATH = re.compile(r"/([^;]+?)((?:;UIDVALIDITY=[^/]*)?/;UID=.*)", re.ASCII | re.IGNORECASE | re.DOTALL)
_NZ = r"[1-9][0-9]{0,9}"
_MESSAGE = re.compile(rf"(?:;UIDVALIDITY=({_NZ}))?/;UID=({_NZ})"
                      rf"(?:/;SECTION=([A-Za-z0-9.]{{1,200}}))?"
                      rf"(?:/;PARTIAL=([0-9]{{1,10}})(?:\.({_NZ}))?)?", re.ASCII | re.IGNORECASE)
_SECTION = re.compile(r"((?:[1-9][0-9]{0,9})(?:\.[1-9][0-9]{0,9})*)?(?:(?:^|\.)(HEADER|TEXT|MIME))?",
                      re.ASCII | re.IGNORECASE)


class BadUrl(Exception):
    """Not a URL this server can resolve; the text is the URL as it may be echoed."""


@dataclass(frozen=True)
class ImapUrl:
    user: str | None          # imap://user@host/...: must be the logged-in user
    mailbox: str | None       # the mailbox name as IMAP sends it (mUTF-7); None: the selected one
    uidvalidity: int | None
    uid: int
    numbers: tuple[int, ...]  # the section's part numbers (empty: the whole message)
    text: str                 # "", "HEADER", "TEXT" or "MIME"
    partial: tuple[int, int | None] | None   # (offset, length) of ;PARTIAL=


def echo(url: str) -> str:
    """The URL as a [BADURL ...] code may carry it: printable ASCII without "]", cut short."""
    return "".join(c for c in url if "!" <= c <= "~" and c != "]")[:200] or "?"


def _unescape(text: str, url: str) -> str:
    def one(m: re.Match) -> str:
        return chr(int(m.group(1), 16))
    if "%" in _PCT.sub("", text):
        raise BadUrl(url)                      # a % not followed by two hex digits
    out = _PCT.sub(one, text)
    if any(not (" " <= c <= "~") for c in out):
        raise BadUrl(url)                      # a mailbox name on the wire is 7-bit (mUTF-7)
    return out


def parse(url: str) -> ImapUrl:
    """The URL's parts; BadUrl for anything else than a message or part URL of RFC 5092."""
    after_scheme = url[7:] if url[:7].lower() == "imap://" else url
    if not url or len(url) > MAX_URL or _BCHARS.fullmatch(after_scheme) is None:
        raise BadUrl(url)
    user = mailbox = None
    rest = url
    m = _SERVER.match(url)
    if m is not None:
        if m.group(1) is None or ";" in m.group(1):
            raise BadUrl(url)                  # anonymous, or ;AUTH=: not the user's own session
        user = _unescape(m.group(1), url)
        rest = "/" + url[m.end():]
    elif url[:1] not in ("/", ";"):
        raise BadUrl(url)
    if rest.startswith("/"):
        # enc-mailbox holds no ";" (it would be %3B): the mailbox ends where ;UIDVALIDITY= or /;UID= begins
        m = _MAILBOX_PATH.fullmatch(rest)
        if m is None:
            raise BadUrl(url)
        mailbox = _unescape(m.group(1), url)
        rest = m.group(2)
    else:
        rest = "/" + rest                       # ;UID=... relative to the selected mailbox
    m = _MESSAGE.fullmatch(rest)
    if m is None:
        raise BadUrl(url)
    uidvalidity, uid, section, offset, length = m.groups()
    numbers: tuple[int, ...] = ()
    text = ""
    if section:
        s = _SECTION.fullmatch(section)
        if s is None or not (s.group(1) or s.group(2)):
            raise BadUrl(url)
        numbers = tuple(int(n) for n in s.group(1).split(".")) if s.group(1) else ()
        text = (s.group(2) or "").upper()
        if len(numbers) > MAX_SECTION_DEPTH or any(n > 0xFFFFFFFF for n in numbers) or (
                text == "MIME" and not numbers):
            raise BadUrl(url)
    for n in (uidvalidity, uid):
        if n is not None and int(n) > 0xFFFFFFFF:
            raise BadUrl(url)
    partial = None
    if offset is not None:
        if int(offset) > 0xFFFFFFFF or (length is not None and int(length) > 0xFFFFFFFF):
            raise BadUrl(url)
        partial = (int(offset), int(length) if length is not None else None)
    return ImapUrl(user, mailbox, int(uidvalidity) if uidvalidity else None, int(uid), numbers, text, partial)
