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


def strip_infected(data: bytes, scan_part, eol: bytes = b"\r\n") -> tuple[bytes, list[tuple[str, str]]] | None:
    """(the message with its infected parts replaced, [(file name, virus)]), or None when
    it cannot be done. scan_part(bytes) -> Found; it may raise ScanFailed."""
    crlf = data if eol == b"\r\n" else data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    top = Part(crlf, 0, len(crlf))
    if not top.is_multipart:
        return None
    leaves: list[Part] = []
    if not _collect(top, leaves):
        return None
    cuts, removed = [], []
    for part in leaves:
        found: Found = scan_part(_decoded(part))
        if found.infected:
            name = _file_name(part)
            cuts.append((part.start, part.end, _note(name, found.name)))
            removed.append((name, found.name))
    if not removed:
        return None                  # the whole is infected, no part alone: refuse it
    out, at = [], 0
    for start, end, note in cuts:
        out += [crlf[at:start], note]
        at = end
    out.append(crlf[at:])
    stripped = b"".join(out)
    return (stripped if eol == b"\r\n" else stripped.replace(b"\r\n", b"\n")), removed


def _collect(part: Part, leaves: list[Part]) -> bool:
    """The leaf parts (a message/rfc822 part is one leaf: removed whole); False past MAX_PARTS."""
    for child in part.children:
        if child.is_multipart:
            if not _collect(child, leaves):
                return False
        else:
            leaves.append(child)
            if len(leaves) > MAX_PARTS:
                return False
    return True


def _decoded(part: Part) -> bytes:
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


def _file_name(part: Part) -> str:
    name = part.param("name")
    disposition = part.header("content-disposition")
    if disposition is not None:
        name = dict(parse_params(disposition)[1]).get("filename") or name
    shown = "".join(c for c in (name or "") if " " <= c <= "~" and c not in '"\\')[:100].strip()
    return shown or "attachment"


def _note(name: str, virus: str) -> bytes:
    return (f"Content-Type: text/plain; charset=us-ascii\r\n"
            f"Content-Disposition: attachment; filename=\"{name}.txt\"\r\n"
            f"Content-Transfer-Encoding: 7bit\r\n\r\n"
            f"The attachment \"{name}\" was removed by the mail server: it contained the virus {virus}.\r\n"
            ).encode("ascii", "replace")
