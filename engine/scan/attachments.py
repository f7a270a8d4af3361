"""Which attachments of a message are blocked ([attachments] in mailctl.toml): by the file
name's extension (Content-Disposition filename and Content-Type name, RFC 2231 and RFC 2047
encoded too), by the names inside a zip archive (one level deep: its central directory
is read, nothing is ever extracted), and by MIME type.

A name's extension is what Windows would run it as: the last one, case-insensitive, with
the trailing dots and spaces Windows drops taken off and any path before a / or \\ ignored
("invoice.pdf.exe ." is an .exe). engine/accept/attachments.py replaces the parts
blocked here (engine/scan/strip.py) or refuses the message.
"""
from __future__ import annotations

import email.header
import io
import re
import struct
import urllib.parse
import zipfile

from ..imap.mime import Part, parse_params
from . import strip

ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/x-zip")
_EOCD = b"PK\x05\x06"
_LOCATOR64, _END64 = b"PK\x06\x07", b"PK\x06\x06"
_SECTION = re.compile(r"^(?P<base>[a-z]+)\*(?:(?P<n>\d{1,3})(?P<enc>\*)?|)$")
NAME_BYTES_PER_ENTRY = 600          # central directory bytes allowed per entry (46 fixed + name + extra)


def part_names(part: Part) -> list[str]:
    """Every file name the part gives (filename= and name=, plain, RFC 2231 and RFC 2047
    encoded), decoded, in no particular order; [] for none."""
    params = list(part.params)
    disposition = part.header("content-disposition")
    if disposition is not None:
        params += parse_params(disposition)[1]
    names = []
    for value in [v for k, v in params if k in ("filename", "name")] + rfc2231_values(params):
        names.append(value)
        decoded = rfc2047(value)
        if decoded != value:
            names.append(decoded)
    return names


def rfc2231_values(params: list[tuple[str, str]]) -> list[str]:
    """The RFC 2231 values of filename* and name* (continuations joined in order)."""
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    for key, value in params:
        m = _SECTION.match(key)
        if m is None or m.group("base") not in ("filename", "name"):
            continue
        if m.group("n") is None:            # filename*=charset'lang'value
            sections.setdefault(m.group("base"), {})[0] = (value, True)
        else:
            sections.setdefault(m.group("base"), {})[int(m.group("n"))] = (value, bool(m.group("enc")))
    out = []
    for parts in sections.values():
        charset, pieces = "utf-8", []
        for n in sorted(parts):
            value, encoded = parts[n]
            if encoded and n == min(parts) and value.count("'") >= 2:
                charset, _lang, value = value.split("'", 2)
            pieces.append((value, encoded))
        # decoded once joined: a %XX, or one UTF-8 character's octets, may span two sections
        out.append(_unquote("".join(v if enc else v.replace("%", "%25") for v, enc in pieces), charset))
    return out


def _unquote(value: str, charset: str) -> str:
    try:
        return urllib.parse.unquote(value, encoding=charset or "utf-8", errors="replace")
    except LookupError:                     # an unknown charset: the bytes as UTF-8
        return urllib.parse.unquote(value, errors="replace")


def rfc2047(value: str) -> str:
    """An RFC 2047 encoded-word name decoded (the value itself when it is not one)."""
    if "=?" not in value:
        return value
    try:
        return "".join(b.decode(c or "utf-8", "replace") if isinstance(b, bytes) else b
                       for b, c in email.header.decode_header(value))
    except (LookupError, ValueError, AssertionError):
        return value


def basename(name: str) -> str:
    """The name without any path a sender put before it (/ or \\): what is shown."""
    return re.split(r"[/\\]", name)[-1]


def extension(name: str) -> str:
    """'.exe' for 'a/invoice.PDF.exe. ' (what Windows would run it as); '' for none."""
    base = basename(name).rstrip(" .\t\r\n\0")
    stem, dot, ext = base.rpartition(".")
    return "." + ext.lower() if dot and ext else ""


def zip_names(data: bytes, max_entries: int) -> tuple[list[str], bool]:
    """(the names in a zip archive, whether any entry is encrypted). Raises ValueError when
    it is not one zipfile can read, or holds more than max_entries (counted from its end
    record before anything else is read, so an archive of a million entries costs little)."""
    at = data.rfind(_EOCD, max(0, len(data) - 22 - 65535))
    if at < 0 or len(data) - at < 22:
        raise ValueError("no zip end record")
    _sig, _disk, _cd_disk, _here, total, cd_size, _cd_at, _comment = struct.unpack("<4s4H2LH", data[at:at + 22])
    record64 = at - 20 - 56                  # zipfile believes a zip64 end record right before it
    if data[at - 20:at - 16] == _LOCATOR64 and record64 >= 0 and data[record64:record64 + 4] == _END64:
        total64, cd_size64 = struct.unpack("<2Q", data[record64 + 32:record64 + 48])
        total, cd_size = max(total, total64), max(cd_size, cd_size64)
    if total > max_entries or cd_size > max_entries * NAME_BYTES_PER_ENTRY:
        raise ValueError(f"more than {max_entries} entries")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError,
            NotImplementedError, struct.error, UnicodeDecodeError) as e:
        raise ValueError(f"unreadable zip: {type(e).__name__}") from None
    if len(infos) > max_entries:
        raise ValueError(f"more than {max_entries} entries")
    return [i.filename for i in infos], any(i.flag_bits & 1 for i in infos)


def is_zip(part: Part, names: list[str], body: bytes) -> bool:
    return (f"{part.type}/{part.subtype}" in ZIP_TYPES or any(extension(n) == ".zip" for n in names)
            or body[:4] in (b"PK\x03\x04", b"PK\x05\x06"))


def judge(part: Part, cfg) -> tuple[str, str] | None:
    """(the name shown, why it is blocked) when the part is blocked by cfg, else None."""
    names = part_names(part)
    shown = strip.shown_name(basename(next((n for n in reversed(names) if n), "")))
    extensions = {e.lower() for e in cfg.extensions}
    for name in names:
        ext = extension(name)
        if ext in extensions:
            return shown, f"files of type {ext} are not accepted"
    ctype = f"{part.type}/{part.subtype}"
    if ctype in {t.lower() for t in cfg.mime_types}:
        return shown, f"attachments of type {ctype} are not accepted"
    if part.type == "message":
        return _judge_enclosed(part, cfg, shown)
    if not cfg.look_in_zip or part.type in ("multipart", "text"):
        return None
    body = strip.decoded(part)
    if not is_zip(part, names, body):
        return None
    try:
        inner, encrypted = zip_names(body, cfg.max_zip_entries)
    except ValueError as e:
        if cfg.unreadable_zip == "remove":
            return shown, f"the archive could not be examined ({e})"
        return None
    for name in inner:
        ext = extension(name)
        if ext in extensions:
            return shown, f"it holds {strip.shown_name(basename(name))}, and files of type {ext} are not accepted"
    if encrypted and cfg.encrypted_zip == "remove":
        return shown, "it is an encrypted archive, which cannot be examined"
    return None


def _judge_enclosed(part: Part, cfg, shown: str) -> tuple[str, str] | None:
    """A forwarded message (message/rfc822) is removed whole when one of its own parts is
    blocked (to the MIME parser's depth and part limits)."""
    inner = part.message
    if inner is None:
        return None
    stack = [inner]
    while stack:
        here = stack.pop()
        if here.is_multipart:
            stack.extend(here.children)
            continue
        found = judge(here, cfg)
        if found is not None:
            name = "forwarded message" if shown == "attachment" else shown
            return name, f"it holds {found[0]}: {found[1]}"
    return None

