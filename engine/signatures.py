"""Signatures and disclaimers on submitted mail (hMailServer's, feature inventory §3.6): which
one a message gets, and putting it into the right MIME part.

Which: an account's own (`signature_text`, `signature_html` in its table) and its domain's
(the same keys at the top of the domain's file), by the domain's `signature_mode`:
"if_none" (the domain's when the account has none), "overwrite" (the domain's wins),
"append" (the account's, then the domain's: a disclaimer). The domain says whether replies
(`signature_replies`) and mail to local recipients only (`signature_local`) get one.
%NAME% and %ADDRESS% are the account's name and address. Without an HTML version the text
is made HTML (escaped, line breaks kept).

Where: the first text/plain and the first text/html part that are not attachments (the
message itself when it is one of them), each decoded (its transfer encoding and charset),
the signature added (text: after a "-- " line; HTML: before </body>), and encoded again
the same way (UTF-8, and quoted-printable for a 7bit part, when the signature needs it).
Every other byte of the message stays as it was: parts are cut out by their offsets. It
runs before DKIM signs the message on its way out, so the signature verifies.
"""
from __future__ import annotations

import base64
import html
import quopri
import re

from .imap.mime import Part

MODES = ("if_none", "overwrite", "append")
MAX_SIGNATURE = 16 * 1024
_BODY_END = re.compile(rb"</body\s*>", re.I)
_REPLY = re.compile(r"\s*(re|aw|sv|antw|ref)\s*:", re.I)


def chosen(account, domain) -> tuple[str, str] | None:
    """(text, html) the account's mail gets, or None."""
    own = (account.signature_text, account.signature_html)
    theirs = (domain.signature_text, domain.signature_html) if domain is not None else ("", "")
    mode = domain.signature_mode if domain is not None else "if_none"
    has_own, has_theirs = any(own), any(theirs)
    if mode == "overwrite" and has_theirs:
        pick = theirs
    elif mode == "append" and has_own and has_theirs:
        pick = tuple("\n\n".join(x for x in pair if x) for pair in zip(own, theirs))
    else:
        pick = own if has_own else theirs
    if not any(pick):
        return None
    text, markup = pick
    name = account.name or account.address
    fill = lambda s: s.replace("%NAME%", name).replace("%ADDRESS%", account.address)   # noqa: E731
    text = fill(text) or _strip_tags(fill(markup))
    markup = fill(markup) if markup else html.escape(fill(text)).replace("\n", "<br>\n")
    return text, markup


def is_reply(subject: str, in_reply_to: bool) -> bool:
    return in_reply_to or bool(_REPLY.match(subject))


def add(data: bytes, text: str, markup: str) -> bytes | None:
    """data (CRLF lines) with the signature in its text and HTML parts; None when it has
    neither (an attachment alone, a broken message)."""
    top = Part(data, 0, len(data))
    plain, rich = _targets(top)
    cuts = []
    for part, make in ((plain, lambda body: _after_text(body, text)), (rich, lambda body: _into_html(body, markup))):
        if part is None:
            continue
        replaced = _rewritten(part, make, top is part)
        if replaced is not None:
            cuts.append(replaced)
    if not cuts:
        return None
    out, at = [], 0
    for start, end, new in sorted(cuts):
        out += [data[at:start], new]
        at = end
    out.append(data[at:])
    return b"".join(out)


def _targets(top: Part) -> tuple[Part | None, Part | None]:
    plain = rich = None
    stack = [top]
    seen = 0
    while stack and seen < 200:
        part = stack.pop(0)
        seen += 1
        if part.is_multipart:
            stack = list(part.children) + stack
            continue
        disposition = (part.header("content-disposition") or b"").strip().lower()
        if disposition.startswith(b"attachment") or part.type != "text":
            continue
        if part.subtype == "plain" and plain is None:
            plain = part
        elif part.subtype == "html" and rich is None:
            rich = part
    return plain, rich


def _after_text(body: str, text: str) -> str:
    """The text, its signature after the "-- " line mail readers know (RFC 3676 §4.3)."""
    lines = text.replace("\r\n", "\n").replace("\n", "\r\n")
    ends = body.endswith("\n")        # a multipart's part ends before the CRLF of the next boundary
    return body + ("" if ends or not body else "\r\n") + "-- \r\n" + lines + ("\r\n" if ends else "")


def _into_html(body: str, markup: str) -> str:
    found = list(re.finditer(r"</body\s*>", body, re.I))
    block = f'<div class="signature">{markup}</div>'
    if found:
        at = found[-1].start()
        return body[:at] + block + body[at:]
    return body + ("" if body.endswith("\n") else "\r\n") + block + ("\r\n" if body.endswith("\n") else "")


def _rewritten(part: Part, make, is_top: bool) -> tuple[int, int, bytes] | None:
    """(start, end, new bytes) of a part with its body changed by make(text), or None when
    its body cannot be read (a broken encoding, an unknown charset)."""
    cte = (part.header("content-transfer-encoding") or b"7bit").strip().lower().decode("ascii", "replace")
    charset = part.param("charset") or "us-ascii"
    raw = part.body_bytes()
    try:
        if cte == "base64":
            raw = base64.b64decode(b"".join(raw.split()), validate=True)
        elif cte == "quoted-printable":
            raw = quopri.decodestring(raw)
        body = raw.decode(charset)
    except (ValueError, LookupError):
        return None
    new = make(body)
    try:
        encoded, new_charset = new.encode(charset), charset
    except (UnicodeEncodeError, LookupError):
        encoded, new_charset = new.encode("utf-8"), "utf-8"
    new_cte = cte
    if cte == "base64":
        payload = base64.encodebytes(encoded).replace(b"\n", b"\r\n")
    elif cte == "quoted-printable" or (not encoded.isascii() and cte in ("7bit", "")):
        payload, new_cte = quopri.encodestring(encoded.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n"), "quoted-printable"
    else:
        payload = encoded
    head = part.data[part.start:part.body_start]
    if new_charset != charset:
        head = _with_charset(head, new_charset)
    if new_cte != cte:
        head = _with_field(head, b"Content-Transfer-Encoding", new_cte.encode())
    return part.start, part.end, head + payload


def _with_field(head: bytes, name: bytes, value: bytes) -> bytes:
    """head with the field name set to value (its old lines, folded ones too, replaced)."""
    lines = head.split(b"\r\n")
    out, skipping = [], False
    for line in lines:
        if skipping and line[:1] in (b" ", b"\t"):
            continue
        skipping = line.lower().startswith(name.lower() + b":")
        if not skipping:
            out.append(line)
    while out and out[-1] == b"":
        out.pop()
    return b"\r\n".join(out + [name + b": " + value, b"", b""])


def _with_charset(head: bytes, charset: str) -> bytes:
    match = re.search(rb"(?im)^content-type:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*", head)
    if match is None:
        return _with_field(head, b"Content-Type", f"text/plain; charset={charset}".encode())
    field = match.group(0)
    if re.search(rb"(?i)charset\s*=", field):
        new = re.sub(rb'(?i)charset\s*=\s*("[^"]*"|[^;\s]*)', b"charset=" + charset.encode(), field)
    else:
        new = field + b"; charset=" + charset.encode()
    return head[:match.start()] + new + head[match.end():]


def _strip_tags(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"(?i)<br\s*/?>", "\n", markup))).strip()
