"""Where the Sender Rewriting Scheme applies (engine/srs.py: the addresses; [srs] settings).

- A copy that a local address (alias, forward, list) sends on to another domain goes out
  with an SRS sender at our domain: delivery.py asks forwarded_sender. Mail our users send,
  local copies, relayed mail (backup MX, submission) and the null sender keep theirs.
- A recipient that is an SRS address at one of our domains (a bounce of such a copy)
  resolves to the original sender when its hash and age are valid, and is refused with
  550 5.1.1 otherwise, so nobody can relay through it: reverse_recipient, asked at RCPT
  (accept/rcpt.py) and again at delivery (delivery.py, which also sends our own DSNs).
"""
from __future__ import annotations

import logging
import time

from . import srs, srs_secret
from .addresses import normalize_domain
from .directory import Directory, Resolution
from .errors import InvalidInput
from .root import Root
from .smtp.replies import SRS_INVALID

log = logging.getLogger("mailctl")


def signer(root: Root, settings) -> srs.Signer:
    conf = settings.srs
    return srs.Signer(srs_secret.load(root), int(conf.hash_length), int(conf.max_age_days))


def ours(settings, directory: Directory, domain: str) -> bool:
    """A domain SRS addresses of ours are at: srs.domain, or any local domain."""
    return domain == settings.srs.domain or directory.is_local_domain(domain)


def looks_like(address: str) -> bool:
    """Cheap test before any file is read: an SRS0/SRS1 local part."""
    return srs.tag_of(address) is not None and "@" in address


def forwarded_sender(root: Root, settings, directory: Directory, sender: str, forwarder: str,
                     now: float | None = None) -> str:
    """The envelope sender of a copy that `forwarder` (a local address) sends on to
    another domain: the SRS form of a foreign sender, else the sender unchanged."""
    if not settings.srs.enabled or not sender or "@" not in sender:
        return sender
    if ours(settings, directory, sender.rpartition("@")[2]):
        return sender                       # our own users' mail passes SPF as it is
    fwd_domain = forwarder.rpartition("@")[2]
    domain = settings.srs.domain or directory.canonical_domain(fwd_domain) or fwd_domain
    return srs.forward(signer(root, settings), sender, domain, time.time() if now is None else now)


def reverse_recipient(root: Root, settings, directory: Directory, address: str,
                      now: float | None = None) -> Resolution | None:
    """None when address is not an SRS address at one of our domains (the directory
    decides); else where it goes: the original sender, or the 550 5.1.1 refusal."""
    if not settings.srs.enabled or not looks_like(address):
        return None
    local, _, dom = address.rpartition("@")
    try:
        dom = normalize_domain(dom)
    except InvalidInput:
        return None
    if not ours(settings, directory, dom):
        return None
    address = f"{local}@{dom}"
    try:
        target = srs.reverse(signer(root, settings), address, time.time() if now is None else now)
    except srs.SRSError as e:
        log.info("srs: %.200r refused: %s", address, e)
        return Resolution(address, True, rejection=SRS_INVALID)
    if directory.is_local_domain(target.rpartition("@")[2]):
        return directory.resolve(target)        # a domain that became ours since
    return Resolution(address, True, external=[target])
