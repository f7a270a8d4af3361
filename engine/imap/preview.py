"""PREVIEW (RFC 8970): a short plain-text summary of a message for a message list.

The text comes from the message's first text part, text/plain preferred (in a
multipart/alternative the plain alternative is taken over the HTML one), else text/html
with its markup dropped and its character references decoded; an attachment or an
enclosed message is never previewed. The part is decoded from its transfer encoding
and charset (transfer.py, charsets.py), quoted lines ("> ...") and the signature after
"-- " are left out, white space is collapsed, and at most MAX_CHARS characters are
kept. A message with no such text has the empty preview "" (as Dovecot answers).

Only the first READ_BYTES of a message are read for it, so a client listing a large
folder with previews reads little of each file. Message files never change once
delivered, so a preview, once made, is kept per process by (folder, base name) in a
bounded cache (headercache.HeaderCache) and never goes stale.
"""
from __future__ import annotations

import html
import os
import re

from .. import charsets, nofollow
from ..maildir import to_crlf
from . import mime
from .headercache import HeaderCache
from .transfer import UnknownCTE, decoded_body

MAX_CHARS = 256                   # RFC 8970 §3: at most 256 characters
READ_BYTES = 64 * 1024            # of a message file, for its preview
TEXT_BYTES = 16 * 1024            # of a text/plain part's decoded body
CACHE_BYTES = 8 * 1024 * 1024     # ~30,000 previews of 256 characters
PREVIEWS = HeaderCache(CACHE_BYTES)

# Elements whose content is no text of the message; tags that break a line (a space).
_DROPPED = ("head", "style", "script", "title")
_BREAKS = frozenset({"p", "br", "div", "li", "tr", "td", "th", "table", "ul", "ol", "h1", "h2", "h3",
                     "h4", "h5", "h6", "hr", "blockquote", "pre", "section", "article", "dd", "dt"})
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*|[!?])?[^>]*>?")   # a tag, <!DOCTYPE ...>, <?xml ...?>
_TAG_START = re.compile(r"[A-Za-z/!?]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def read_prefix(folder, msg) -> bytes:
    """The first READ_BYTES of a message file (CRLF), or all of it when its header goes
    on past them (an ENVELOPE asked for beside PREVIEW needs the whole header); NotFound
    when the message is gone."""
    try:
        fd = nofollow.open_file(f"{folder.path}/{msg.subdir}/{msg.filename}")
    except FileNotFoundError:         # renamed by a flag change meanwhile: found by base name
        return to_crlf(folder.read(msg))
    try:
        data = os.pread(fd, READ_BYTES, 0)
        if len(data) == READ_BYTES and b"\n\n" not in data and not data.startswith(b"\n"):
            data = read_all_from(fd)
        return to_crlf(data)
    finally:
        os.close(fd)


def read_all_from(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def cached(folder, msg) -> bytes | None:
    """The preview (UTF-8) this process made earlier, or None."""
    return PREVIEWS.get((str(folder.path), msg.base))


def remember(folder, msg, value: bytes) -> None:
    PREVIEWS.put((str(folder.path), msg.base), value)


def preview_text(root: mime.Part) -> str:
    """The preview of a parsed message (or of the first bytes of one). Never raises:
    broken structure or encodings give what can be read of them, or ""."""
    part = _text_part(root)
    if part is None:
        return ""
    # Only the start of a large part (a whole message is parsed when FETCH reads it all
    # for another item): its preview is in its first bytes.
    start = part if part.end - part.body_start <= READ_BYTES else \
        mime.Part(part.data, part.start, part.body_start + READ_BYTES)
    try:
        body = decoded_body(start)
    except UnknownCTE:
        return ""
    is_html = part.subtype == "html"
    text = charsets.decode(body[:READ_BYTES] if is_html else body[:TEXT_BYTES], part.param("charset"))
    text = html_text(text) if is_html else _unquoted(text)
    return summary(text)


def _text_part(part: mime.Part) -> mime.Part | None:
    """The leaf to preview: the first text/plain or text/html one in reading order, the
    plain one of a multipart/alternative. The parser bounds depth and part count."""
    if part.is_multipart:
        kids = part.children
        if part.subtype == "alternative":
            plain = [k for k in kids if not k.is_multipart and k.type == "text" and k.subtype == "plain"]
            kids = plain[:1] + kids
        for kid in kids:
            found = _text_part(kid)
            if found is not None:
                return found
        return None
    if part.type != "text" or part.subtype not in ("plain", "html"):
        return None
    disposition = part.header("content-disposition") or b""
    if disposition.strip().lower().startswith(b"attachment"):
        return None
    return part


def _unquoted(text: str) -> str:
    """Plain text without quoted lines ("> ...") and without the signature after "-- "."""
    out = []
    for line in text.splitlines():
        if line.rstrip("\r") == "-- ":
            break
        if not line.lstrip().startswith(">"):
            out.append(line)
    return "\n".join(out)


def html_text(text: str) -> str:
    """HTML as its text: comments and the head, style and script elements dropped, tags
    removed (a space where one breaks a line), character references decoded. Linear in
    the input: each search starts where the last ended (no regex backtracking over a
    hostile document of unclosed elements)."""
    low = text.lower()
    out: list[str] = []
    pos = 0
    n = len(text)
    while pos < n:
        lt = text.find("<", pos)
        if lt < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:lt])
        if low.startswith("<!--", lt):
            end = low.find("-->", lt + 4)
            pos = n if end < 0 else end + 3
            continue
        if not _TAG_START.match(text, lt + 1):   # "<" opening no tag: text (a < b)
            out.append("<")
            pos = lt + 1
            continue
        m = _TAG.match(text, lt)
        name = (m.group(2) or "").lower()
        pos = m.end()
        if name in _DROPPED and not m.group(1):
            end = low.find(f"</{name}", pos)
            if end < 0:
                break                        # never closed: nothing after it is text
            close = low.find(">", end)
            pos = n if close < 0 else close + 1
            out.append(" ")
            continue
        if name in _BREAKS:
            out.append(" ")
    return html.unescape("".join(out))


def summary(text: str) -> str:
    """Control characters gone, white space collapsed, at most MAX_CHARS characters."""
    for window in (2 * MAX_CHARS, TEXT_BYTES):   # most texts fill a preview from their start
        out = " ".join(_CONTROLS.sub(" ", text[:window]).split())
        # more than MAX_CHARS: what a larger window adds comes after them
        if len(out) > MAX_CHARS or window >= len(text):
            break
    return out[:MAX_CHARS].rstrip()
