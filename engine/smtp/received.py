"""The Received: header we add on receipt (RFC 5321 §4.4), with TLS and AUTH details
(RFC 3848 protocol types: ESMTP, ESMTPS, ESMTPA, ESMTPSA)."""
from __future__ import annotations

import email.utils
import re
import time

_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]@]")


def clean(text: str, limit: int = 100) -> str:
    """Client-supplied text in a header: printable, no spaces, parentheses or CR/LF."""
    return _UNSAFE.sub("?", text or "")[:limit] or "unknown"


def protocol_type(esmtp: bool, tls: bool, auth: bool) -> str:
    if not esmtp:
        return "SMTP"
    return "ESMTP" + ("S" if tls else "") + ("A" if auth else "")


def received_header(*, helo: str, ip: str, hostname: str, txid: str, esmtp: bool,
                    tls_version: str = "", cipher: str = "", auth_user: str = "",
                    recipients: list[str] | None = None, now: float | None = None) -> bytes:
    lines = [f"Received: from {clean(helo)} (unknown [{ip}])"]
    if tls_version:
        lines.append(f"\t(using {clean(tls_version, 20)} with cipher {clean(cipher, 60)})")
    if auth_user:
        lines.append(f"\t(Authenticated sender: {clean(auth_user, 200)})")
    lines.append(f"\tby {hostname} (mailctl) with {protocol_type(esmtp, bool(tls_version), bool(auth_user))}"
                 f" id {txid}")
    date = email.utils.formatdate(now if now is not None else time.time(), localtime=False)
    if recipients and len(recipients) == 1:
        lines.append(f"\tfor <{clean(recipients[0], 300)}>; {date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")
