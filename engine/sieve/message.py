"""The message as Sieve tests see it: decoded header values, addresses, the envelope,
the size and the body text."""
from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import getaddresses


@dataclass
class SieveMessage:
    raw: bytes
    sender: str            # envelope from ('' for the null sender)
    recipient: str         # envelope to: the mailbox this run is for

    def __post_init__(self):
        self.msg = email.message_from_bytes(self.raw, policy=email.policy.compat32)
        self.size = len(self.raw)
        self._headers: dict[str, list[str]] = {}        # decoded once per field name and message
        self._addresses: dict[str, list[str]] = {}

    def headers(self, name: str) -> list[str]:
        key = name.lower()
        if key not in self._headers:
            self._headers[key] = self._decoded(name)
        return self._headers[key]

    def _decoded(self, name: str) -> list[str]:
        out = []
        for value in self.msg.get_all(name, []) or []:
            value = str(value).replace("\r\n", "").replace("\n", "")
            try:
                value = str(make_header(decode_header(value)))
            except (ValueError, LookupError, UnicodeError):
                pass
            out.append(value.strip())
        return out

    def addresses(self, name: str) -> list[str]:
        key = name.lower()
        if key not in self._addresses:
            raw = [str(v) for v in self.msg.get_all(name, []) or []]
            self._addresses[key] = [addr for _, addr in getaddresses(raw) if addr]
        return self._addresses[key]

    def envelope(self, part: str) -> list[str]:
        if part == "from":
            return [self.sender]
        if part == "to":
            return [self.recipient]
        return []

    def body_text(self, transform: str, types: list[str] | None) -> list[str]:
        if transform == "raw":
            head, _, body = self.raw.partition(b"\r\n\r\n")
            if not _:
                head, _, body = self.raw.partition(b"\n\n")
            return [body.decode("utf-8", "replace")]
        out = []
        for part in self.msg.walk():
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            if types is None:
                if not ctype.startswith("text/"):
                    continue
            elif not any(t == "" or t == ctype or t == ctype.split("/")[0] for t in (x.lower() for x in types)):
                continue
            payload = part.get_payload(decode=True) or b""
            out.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
        return out


def address_part(addr: str, part: str) -> str | None:
    local, at, domain = addr.rpartition("@")
    if not at:
        local, domain = addr, ""
    if part == "localpart":
        return local
    if part == "domain":
        return domain
    if part in ("user", "detail"):
        user, plus, detail = local.partition("+")
        if part == "user":
            return user
        return detail if plus else None
    return addr
