"""The message as Sieve tests see it: decoded header values, addresses, the envelope,
the size and the body text."""
from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.utils import getaddresses


SPAM_SCORE_FIELD = "x-spam-score"          # written by the spam checks (engine/accept/spamscore.py)
VIRUS_FIELD = "x-virus-scanned"            # written by the virus scan (engine/accept/antivirus.py)
ENGINE_VERSION = "0.1"                      # the environment test's "version" item
_SCORE = re.compile(r"-?\d{1,6}(?:\.\d{1,6})?")


@dataclass
class SieveMessage:
    raw: bytes
    sender: str            # envelope from ('' for the null sender)
    recipient: str         # envelope to: the mailbox this run is for
    spam_max: float = 10.0  # the score spamtest calls 10 (RFC 5235: "definitely spam")
    server: dict = field(default_factory=dict)    # environment items of this run: host, domain, remote-ip
    duplicates: object = None   # the duplicate test's memory (duplicates.DuplicateStore); None: nothing seen

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


    def spamtest(self, percent: bool = False) -> str:
        """RFC 5235 spamtest's value from X-Spam-Score: "0" when the message was not scored,
        else 1..10 (or 0..100 with :percent) for the score against spam_max, computed as
        Pigeonhole does (sieve_spamtest_status_type = score)."""
        found = _SCORE.fullmatch((self.headers(SPAM_SCORE_FIELD) or [""])[0].strip())
        if found is None or self.spam_max <= 0:
            return "0"
        ratio = min(max(float(found.group()) / self.spam_max, 0.0), 1.0)
        return str(int(ratio * 100 + 0.001) if percent else int(ratio * 9 + 1.001))

    def virustest(self) -> str:
        """RFC 5235 virustest's value from X-Virus-Scanned: "0" not scanned, "1" scanned and
        clean, "2" a virus was found and its part removed (the virus scan's only outcomes
        that reach a mailbox: an infected message is refused or discarded otherwise)."""
        value = (self.headers(VIRUS_FIELD) or [""])[0].strip()
        if not value.startswith("mailctl (") or not value.endswith(")"):
            return "0"
        return "2" if value.endswith(" removed)") else "1"


    def environment_item(self, name: str) -> str | None:
        """RFC 5183 §4: what the environment test sees; None for an item unknown here."""
        fixed = {"location": "MDA", "phase": "during", "name": "mailctl", "version": ENGINE_VERSION}
        value = self.server.get(name, fixed.get(name))
        return value or None


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

