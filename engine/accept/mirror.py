"""Mirror addresses (hMailServer's "mirror e-mail address", per domain): a copy of every
message to or from a domain whose file names `mirror = "archive@example.com"` goes to that
address too, delivered or queued with the message itself (one delivery, all or nothing).
The copy is the message as stored; the mirror is never told to anyone: its failures are
logged, never bounced to the sender."""
from __future__ import annotations


def mirror_addresses(directory, sender: str, recipients: list[str]) -> list[str]:
    """The mirrors this message owes a copy to, each once, none already a recipient."""
    if directory is None:
        return []
    have = {r.lower() for r in recipients}
    out: list[str] = []
    for address in (sender, *recipients):
        domain = directory.domain(address.rpartition("@")[2].lower()) if "@" in address else None
        mirror = domain.mirror if domain is not None else ""
        if mirror and mirror.lower() not in have and mirror.lower() != sender.lower():
            have.add(mirror.lower())
            out.append(mirror)
    return out
