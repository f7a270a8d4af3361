"""Outbound sending limits per account: a stolen password must not get the server's
address onto block lists ([send_limits] in mailctl.toml, per-account overrides in the
domain file: engine/sendlimits_settings.py; the counts: engine/sendcounts.py).

Who is limited: an account authenticated by SMTP AUTH (587, 465), and a local user whose
sendmail(1) through run/submit.sock maps to an account (login@sendmail.sender_domain).
Not limited: trusted networks without AUTH, `mailctl send`, sendmail run by someone who
can read the mail root, the pickup folder (the administrator's ways in).

What counts: recipients outside our domains. A message counts once when it has at least
one; each such recipient counts once per window however often it is written to. Mail to
our own domains (their aliases, lists and forwards are the administrator's) never
counts and is never refused, so a limited or blocked user can still write to the
postmaster (hMailServer and Postfix policy servers count external recipients alike).

Two places:
- send_limit_rcpt (RCPT TO): an external recipient past a limit gets 451 4.7.1, the
  others of the transaction go on; read once per transaction, no lock, no write.
- send_limit (after DATA, just before deliver): the check again and the count, in one
  step under the account's lock at the moment the queue commits the message (the
  delivery's before_commit hook). A refused message is never counted, and two sessions
  of one account racing on two serving processes cannot both take the last place: the
  second is refused after DATA (451), nothing stored.
A daily limit that refuses blocks the account's external sending (`mailctl account
show` says so) until `mailctl account unblock` or send_limits.unblock_after_hours.
"""
from __future__ import annotations

from ..directory import Account
from ..errors import MailError
from ..sendcounts import Over, SendCounts, recipient_key
from ..sendlimits_settings import limits_for
from ..smtp import replies
from .arrival import Arrival
from .verdicts import CONTINUE, Defer, Refused


async def send_limit_rcpt(check):
    """RCPT-time stage: CONTINUE, or Defer(451 4.7.1) for an external recipient past a limit."""
    rt, user, result = check.runtime, check.client.user, check.result
    if not user or result.resolution.local_domain:
        return CONTINUE
    limits = limits_for(rt.settings, rt.directory.account(user))
    if not limits.any:
        return CONTINUE
    unblock_after = rt.settings.send_limits.unblock_after_hours
    memo = check.transaction.setdefault("send_limits", {})     # read once per transaction
    if "usage" not in memo:
        memo["usage"] = await rt.run_blocking(SendCounts(rt.root).usage, user, unblock_after)
        memo["recipients"] = []             # the external recipients accepted so far
    usage, pending = memo["usage"], memo["recipients"]
    key = recipient_key(result.address)
    if usage.blocked:
        return _refused(rt, user, usage.blocked_why, check.address, blocked=True)
    over = usage.over(limits, [*pending, key])
    if over is None:
        pending.append(key)
        return CONTINUE
    if over.daily:
        try:
            if await rt.run_blocking(SendCounts(rt.root).block, user, over.text(), unblock_after):
                _blocked(rt.log, user, over)
                rt.count("send_limit_blocked")
        except (OSError, MailError) as e:       # the refusal stands; the next one blocks
            rt.log.warning("send limits: cannot block %s: %s", user, getattr(e, "strerror", None) or e)
        usage.blocked, usage.blocked_why = 1.0, over.text()     # for the rest of this transaction
    return _refused(rt, user, over.text(), check.address, blocked=False)


def send_limit(arrival: Arrival):
    """After-DATA stage: a message of a limited account to external recipients is checked
    and counted as the queue commits it; refused (451 4.7.1, nothing stored) past a limit."""
    env, settings, directory = arrival.envelope, arrival.settings, arrival.directory
    user = env.auth_user if env.by_smtp else env.account
    if not user:
        return CONTINUE
    account: Account | None = directory.account(user)
    limits = limits_for(settings, account)
    external = [r for r in env.recipients if not directory.is_local_domain(r.rpartition("@")[2])]
    if not limits.any or not external:
        return CONTINUE
    store, earlier, log = SendCounts(arrival.root), arrival.before_commit, arrival.log
    unblock_after = settings.send_limits.unblock_after_hours

    def count_with_commit(staged, queued) -> None:
        if queued is not None:          # it leaves the server
            refused = store.record(user, limits, external, unblock_after)
            if refused is not None:
                was_blocked = not isinstance(refused, Over)     # then refused says why
                if not was_blocked and refused.daily:
                    _blocked(log, user, refused)
                why = refused.text() if isinstance(refused, Over) else refused
                log.info("send limits: %s (%s): message %s refused: %s", user, env.source, env.txid or "-", why)
                raise Refused(Defer(_reply(user, why, was_blocked), f"{external[0][:100]}=send-limit"))
        if earlier is not None:
            earlier(staged, queued)

    arrival.before_commit = count_with_commit
    return CONTINUE


def _reply(user: str, why: str, blocked: bool):
    return replies.send_blocked(user, why) if blocked else replies.send_limit(user, why)


def _refused(rt, user: str, why: str, address: str, blocked: bool) -> Defer:
    rt.count("send_limit_deferred")
    rt.log.info("send limits: %s: recipient <%s> refused: %s%s", user, address[:100], why,
                " (blocked)" if blocked else "")
    return Defer(_reply(user, why, blocked), f"{address[:100]}=send-limit")


def _blocked(log, user: str, over: Over) -> None:
    log.warning("send limits: %s blocked from sending to external recipients: %s reached "
                "(a stolen password? 'mailctl account unblock %s' lifts it)", user, over.text(), user)
