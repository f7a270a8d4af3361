"""Whether a Sieve vacation action answers this message (RFC 5230 §4.5, RFC 3834 §2):
never to a null or automatic sender, to mailing lists or bulk mail, to automatic
replies, nor when the message does not name the user in To/Cc/Bcc. Remembering whom we
answered and sending the reply: engine/accept/autoreply.py."""
from __future__ import annotations

from email.utils import getaddresses

from .message import SieveMessage

_AUTOMATIC_SENDERS = ("mailer-daemon", "listserv", "majordomo", "owner-", "-request", "-bounces", "postmaster")


def reply_due(message: SieveMessage, user_addresses: list[str], own_addresses: list[str] = ()) -> tuple[bool, str]:
    """(answer?, why not) for a message to a user whose addresses are user_addresses
    (the recipient and the action's :addresses)."""
    sender = message.sender.lower()
    if not sender:
        return False, "null sender"
    local = sender.rpartition("@")[0]
    if any(local.startswith(p) if p.endswith("-") else local.endswith(p) if p.startswith("-") else local == p
           for p in _AUTOMATIC_SENDERS):
        return False, "automatic sender"
    if sender in (a.lower() for a in (*user_addresses, *own_addresses)):
        return False, "sender is the user"
    auto = (message.headers("auto-submitted") or ["no"])[0].strip().lower()
    if not auto.startswith("no"):
        return False, "auto-submitted"
    if any(message.headers(h) for h in ("list-id", "list-help", "list-unsubscribe", "list-post",
                                        "list-subscribe", "list-owner", "list-archive")):
        return False, "mailing list"
    if (message.headers("precedence") or [""])[0].strip().lower() in ("bulk", "list", "junk"):
        return False, "bulk precedence"
    if message.headers("x-auto-response-suppress"):
        return False, "X-Auto-Response-Suppress"
    named = {a.lower() for _, a in getaddresses([str(v) for h in ("to", "cc", "bcc")
                                                 for v in message.msg.get_all(h, []) or []])}
    if not named & {a.lower() for a in user_addresses}:
        return False, "the user is not named in To/Cc/Bcc"
    return True, ""
