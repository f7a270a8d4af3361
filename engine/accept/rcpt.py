"""The stages that answer a RCPT TO before any data is sent (the envelope is all there is):
today the recipient limit, the recipient policy (engine/smtp/policy.py), a domain's size
limit and full mailboxes (engine/smtp/quota.py); greylisting is greylisting.py; later
access lists, DNSBL.

Each is a coroutine function taking a RcptCheck and returning CONTINUE, Reject or Defer;
they run on the event loop (disk work through runtime.run_blocking), in the order
pipeline.py lists them, until one refuses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import srs_forward
from ..smtp import policy, quota, replies
from .verdicts import CONTINUE, Reject, refusal


@dataclass
class RcptCheck:
    """One RCPT TO, as a RCPT-time stage sees it."""
    runtime: object
    client: policy.Client             # IP, listener, authenticated user, trusted network
    sender: str                       # '' for the null sender
    address: str                      # as the client wrote it
    declared_size: int                # MAIL FROM's SIZE=, or 0
    accepted: int                     # recipients already accepted in this transaction
    result: "policy.Accepted | None" = None     # where it resolves (set by recipient_policy)
    helo: str = ""                    # the client's EHLO/HELO name
    transaction: dict = field(default_factory=dict)     # kept for the whole transaction: the
    # SPF result greylisting asked for ("spf"), handed to the after-DATA check


POSTMASTER = "postmaster"


def to_postmaster(accepted) -> bool:
    """A recipient (policy.Accepted) that is postmaster at one of our domains: RFC 5321
    §4.5.1 says it must reach someone, so no block list or HELO check refuses it."""
    if accepted is None:
        return False
    local, _, _ = accepted.address.rpartition("@")
    return local.lower() == POSTMASTER and accepted.resolution.local_domain


async def recipient_limit(check: RcptCheck):
    if check.accepted >= check.runtime.settings.limits.max_recipients:
        return refusal(replies.TOO_MANY_RECIPIENTS)
    return CONTINUE


async def recipient_policy(check: RcptCheck):
    """Relay, unknown users, lists that need authentication ... (engine/smtp/policy.py)."""
    rt = check.runtime
    result = await srs_recipient(check)
    if result is None:
        result = policy.check_recipient(rt.settings, rt.directory, check.client, check.sender, check.address)
    if not isinstance(result, policy.Accepted):
        return refusal(str(result), f"{check.address[:100]}={result.code}")
    check.result = result
    return CONTINUE


async def srs_recipient(check: RcptCheck) -> "policy.Accepted | replies.Rejection | None":
    """An SRS address at one of our domains (a bounce of forwarded mail): to the original
    sender when valid, else 550 5.1.1 (engine/srs_forward.py). None: not one."""
    rt = check.runtime
    if not srs_forward.looks_like(check.address):
        return None                       # no file read for every other address
    res = await rt.run_blocking(srs_forward.reverse_recipient, rt.root, rt.settings, rt.directory, check.address)
    if res is None:
        return None
    return res.rejection or policy.Accepted(res.address, res, 0, list(res.mailboxes))


async def domain_size(check: RcptCheck):
    """A domain's own message size limit, against the SIZE the client declared."""
    result, size = check.result, check.declared_size
    if result.max_size and size > result.max_size:
        return Reject(replies.too_big(size, result.max_size), f"{check.address[:100]}=552")
    return CONTINUE


async def mailbox_full(check: RcptCheck):
    """Every mailbox the recipient reaches is full (engine/smtp/quota.py)."""
    rt, result = check.runtime, check.result
    if result.mailboxes and not result.resolution.external and any(a.quota_mb for a in result.mailboxes):
        if await rt.run_blocking(quota.all_refuse, rt.root, rt.settings, result.mailboxes, check.declared_size):
            return refusal(quota.full_reply(rt.settings), f"{check.address[:100]}=quota")
    return CONTINUE
