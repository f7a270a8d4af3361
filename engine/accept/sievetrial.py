"""What a mailbox's Sieve scripts (the global before scripts, its active one, the global
after scripts, as delivery runs them) do with a saved message: `mailctl rule test`."""
from __future__ import annotations

import email.utils
from pathlib import Path

from ..sieve.message import SieveMessage
from .sieving import folder_check, run_scripts


def try_message(box, root_path: Path, address: str, raw: bytes, sender: str | None = None,
                spam_max: float = 10.0) -> dict:
    """{'actions': [{'action', 'argument', 'flags'}], 'implicit_keep', 'error'}. The sender is
    the envelope's: given, else the message's Return-Path, else its From."""
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if sender is None:
        msg = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
        sender = email.utils.parseaddr(msg.get("Return-Path") or msg.get("From") or "")[1]
    result = run_scripts(box.path, Path(root_path), SieveMessage(raw, sender, address, spam_max), folder_check(box))
    if result is None:
        return {"actions": [], "implicit_keep": True, "error": ""}
    return {"actions": [{"action": a.kind, "argument": a.arg, "flags": list(a.flags)} for a in result.actions],
            "implicit_keep": result.implicit_keep, "error": result.error or ""}
