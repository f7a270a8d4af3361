"""The signature stage: mail an authenticated user submits gets its account's or domain's
signature or disclaimer (engine/signatures.py chooses and places it), before it is stored
or queued, so DKIM signs it on the way out. Mail from other servers, trusted networks and
this machine is left alone; so is a message too large to rewrite in memory."""
from __future__ import annotations

from .. import signatures
from ..largemsg import LargeMessage
from ..smtp.data import header_block
from .arrival import Arrival
from .verdicts import CONTINUE


def add_signature(arrival: Arrival):
    env, directory = arrival.envelope, arrival.directory
    if not env.auth_user or directory is None or isinstance(arrival.content, LargeMessage):
        return CONTINUE
    account = directory.account(env.auth_user)
    if account is None:
        return CONTINUE
    domain = directory.domain(account.domain)
    picked = signatures.chosen(account, domain)
    if picked is None:
        return CONTINUE
    data = bytes(arrival.content)
    crlf = data if arrival.eol == b"\r\n" else data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = header_block(crlf, 0).lower()
    subject = next((line[8:].decode("utf-8", "replace") for line in head.split(b"\r\n") if line.startswith(b"subject:")), "")
    replying = signatures.is_reply(subject, b"\r\nin-reply-to:" in b"\r\n" + head)
    if replying and not (domain and domain.signature_replies):
        return CONTINUE
    local_only = all(directory.domain(r.rpartition("@")[2].lower()) is not None for r in env.recipients)
    if local_only and not (domain and domain.signature_local):
        return CONTINUE
    signed = signatures.add(crlf, *picked)
    if signed is None:
        return CONTINUE
    arrival.content = signed if arrival.eol == b"\r\n" else signed.replace(b"\r\n", b"\n")
    arrival.log.info("signature: %s: added for %s", env.txid or "-", account.address)
    return CONTINUE
