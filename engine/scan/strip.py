"""Removing the infected attachments of a message (antivirus.action = "strip"): each leaf
part of a multipart message is decoded and scanned alone; an infected one is replaced by a
short text part saying what was removed and why (hMailServer puts "<name>.txt" in its
place). Every other byte of the message stays as it was: the parts are cut out by their
offsets (engine/imap/mime.py's parser keeps them), not re-encoded.

A message that is not multipart, or has more parts than we scan one by one, cannot be
stripped: the caller refuses it instead.
"""
from __future__ import annotations

import binascii
import quopri

from ..imap.mime import Part, parse_params
from .verdict import Found

MAX_PARTS = 200              # parts scanned one by one; past it the message is refused whole


class CannotStrip(ValueError):
    """The parts cannot be replaced one by one: `reason` is "single" (not multipart) or
    "too-many" (more leaf parts than the caller examines)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def strip_infected(data: bytes, scan_part, eol: bytes = b"\r\n") -> tuple[bytes, list[tuple[str, str]]] | None:
    """(the message with its infected parts replaced, [(file name, virus)]), or None when
    it cannot be done. scan_part(bytes) -> Found; it may raise ScanFailed."""
    def judge(part: Part):
        found: Found = scan_part(decoded(part))
        return (file_name(part), f"it contained the virus {found.name}", found.name) if found.infected else None
    try:
        stripped, removed = replace_parts(data, judge, eol)
    except CannotStrip:
        return None
    if not removed:
        return None                  # the whole is infected, no part alone: refuse it
    return stripped, [(name, virus) for name, _why, virus in removed]


def replace_parts(data: bytes, judge, eol: bytes = b"\r\n", max_parts: int = MAX_PARTS) -> tuple[bytes, list]:
    """(the message with every leaf part judge(part) answers (shown name, why, ...) for
    replaced by a note, [judge's answers]); the same bytes when it answers None for each.
    Raises CannotStrip when the message is not multipart or has over max_parts leaves."""
    crlf = data if eol == b"\r\n" else data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    top = Part(crlf, 0, len(crlf))
    if not top.is_multipart:
        raise CannotStrip("single")
    leaves: list[Part] = []
    if not _collect(top, leaves, max_parts):
        raise CannotStrip("too-many")
    cuts, removed = [], []
    for part in leaves:
        answer = judge(part)
        if answer is not None:
            cuts.append((part.start, part.end, note(answer[0], answer[1])))
            removed.append(answer)
    if not removed:
        return data, []
    out, at = [], 0
    for start, end, text in cuts:
        out += [crlf[at:start], text]
        at = end
    out.append(crlf[at:])
    stripped = b"".join(out)
    return (stripped if eol == b"\r\n" else stripped.replace(b"\r\n", b"\n")), removed


def _collect(part: Part, leaves: list[Part], max_parts: int) -> bool:
    """The leaf parts (a message/rfc822 part is one leaf: removed whole); False past max_parts."""
    for child in part.children:
        if child.is_multipart:
            if not _collect(child, leaves, max_parts):
                return False
        else:
            leaves.append(child)
            if len(leaves) > max_parts:
                return False
    return True


def decoded(part: Part) -> bytes:
    """The part's body with its transfer encoding undone (as it is when that is broken)."""
    body = part.body_bytes()
    cte = (part.header("content-transfer-encoding") or b"").strip().lower()
    try:
        if cte == b"base64":
            return binascii.a2b_base64(b"".join(body.split()))
        if cte == b"quoted-printable":
            return quopri.decodestring(body)
    except (binascii.Error, ValueError):
        pass                         # broken encoding: scanned as it is
    return body


def file_name(part: Part) -> str:
    name = part.param("name")
    disposition = part.header("content-disposition")
    if disposition is not None:
        name = dict(parse_params(disposition)[1]).get("filename") or name
    return shown_name(name or "")


def shown_name(name: str) -> str:
    """A file name fit for a reply line, a log line and a quoted parameter: printable
    ASCII without quotes or backslashes, at most 100 characters."""
    shown = "".join(c for c in name if " " <= c <= "~" and c not in '"\\')[:100].strip()
    return shown or "attachment"


def note(name: str, why: str) -> bytes:
    """The text part put in a removed part's place (hMailServer names it "<name>.txt")."""
    return (f"Content-Type: text/plain; charset=us-ascii\r\n"
            f"Content-Disposition: attachment; filename=\"{name}.txt\"\r\n"
            f"Content-Transfer-Encoding: 7bit\r\n\r\n"
            f"The attachment \"{name}\" was removed by the mail server: {why}.\r\n"
            ).encode("ascii", "replace")
