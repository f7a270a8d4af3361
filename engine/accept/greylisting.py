"""The greylisting stage (RCPT time, port 25): a first try of an unknown (client network,
sender, recipient) gets 451 4.7.1 Please Try Again Later; a retry after
greylist.delay_minutes passes, and so does that triplet afterwards (engine/greylist.py
keeps the records).

Never greylisted: authenticated clients and the submission ports, trusted networks,
greylist.whitelist_networks and whitelist_sender_domains, our incoming relays, a client
whose IP range turns the spam checks off, a domain whose file says
greylisting = false, mail to postmaster (RFC 5321 §4.5.1: it must reach someone), and a
sender whose SPF passes for the client (greylist.spf_bypass; the result is kept for the
after-DATA check, so DNS is asked once).

A store that cannot be read or written lets the mail through (logged): deferring
instead would defer every retry too (nothing remembers the first try), until the
sender gave up and bounced it; a defence never loses mail.
"""
from __future__ import annotations

import asyncio
import contextlib

from ..greylist import ALLOWED, DUE, NEW, PASSED, Greylist, client_network, domain_listed, ip_listed
from ..errors import InvalidInput
from ..mailauth import dnslookup, spfcheck
from ..smtp import replies
from . import clientgate
from .verdicts import CONTINUE, Defer

POSTMASTER = "postmaster"
EXPIRY_INTERVAL_S = 4 * 3600     # hMailServer's GreylistingRecordExpirationInterval: 240 min
FIRST_EXPIRY_S = 60.0            # the first sweep, after start
_failing = False                 # the store's fault is logged once until it works again


async def greylisting(check):
    """RCPT-time stage: CONTINUE, or Defer(451 4.7.1) for a triplet not yet retried."""
    rt, client, result = check.runtime, check.client, check.result
    cfg = rt.settings.greylist
    if not cfg.enabled or client.listener != "smtp" or client.user or client.trusted:
        return CONTINUE
    why = exempt(rt.settings, rt.directory, client.ip, check.sender, result)
    if why:
        _note(rt, "greylist_exempt", check, why)
        return CONTINUE
    try:
        network = client_network(client.ip, cfg.ip_prefix_v4, cfg.ip_prefix_v6)
    except InvalidInput:
        return CONTINUE               # not an IP client (never on a TCP listener)
    store = Greylist(rt.root, cfg)
    triplet = (network, check.sender, result.address)
    try:
        found = await rt.run_blocking(store.look, *triplet)
        if found == DUE:
            _store_works(rt)                # it wrote the record's pass
        if found in (PASSED, ALLOWED, DUE):
            _note(rt, "greylist_passed", check, found)
            return CONTINUE
        if cfg.spf_bypass and await _spf_passes(rt, check):
            _note(rt, "greylist_exempt", check, "spf pass")
            return CONTINUE
        if found == NEW:
            await rt.run_blocking(store.start, *triplet)
            _store_works(rt)
    except Exception as e:  # noqa: BLE001 - a broken store must not defer mail forever
        _store_failed(rt, e)
        return CONTINUE
    _note(rt, "greylist_deferred", check, "first try" if found == NEW else "retried too early")
    return Defer(replies.GREYLISTED, f"{check.address[:100]}=greylist")


def exempt(settings, directory, ip: str, sender: str, accepted) -> str:
    """Why this recipient (policy.Accepted) or sender is never greylisted ('' when it is);
    `mailctl check message --to` asks it too."""
    cfg = settings.greylist
    if ip_listed(ip, cfg.whitelist_networks):
        return "whitelisted client"
    if clientgate.from_incoming_relay(settings, ip):
        return "incoming relay (our backup MX retries; its client is not known before DATA)"
    if not clientgate.spam_checks_run(settings, ip):
        return "spam checks off for its IP range"
    if sender and domain_listed(sender, cfg.whitelist_sender_domains):
        return "whitelisted sender domain"
    local, _, domain = accepted.address.rpartition("@")
    if local.lower() == POSTMASTER:
        return "postmaster"
    if accepted.resolution.local_domain:
        d = directory.domain(domain)
        if d is not None and not d.greylisting:
            return f"greylisting off for {domain}"
    return ""


async def _spf_passes(rt, check) -> bool:
    """SPF of the sender (the HELO name for the null sender) for the client, asked once
    per transaction and kept in check.transaction for authcheck after DATA."""
    memo = check.transaction
    if "spf" not in memo:
        settings = rt.settings
        resolver = dnslookup.Budget(dnslookup.resolver_for(settings), float(settings.mailauth.time_limit_s))
        memo["spf"] = await rt.run_blocking(spfcheck.check_spf, resolver, check.client.ip, check.sender,
                                            check.helo)
    return memo["spf"].result == "pass"


def _note(rt, counter: str, check, why: str) -> None:
    rt.count(counter)
    rt.log.info("greylist: %s: from=<%s> to=<%s>: %s: %s", check.client.ip, check.sender[:100],
                check.result.address[:100], counter.partition("_")[2], why)


def _store_failed(rt, error: Exception) -> None:
    global _failing
    rt.count("greylist_store_errors")
    if not _failing:
        why = getattr(error, "strerror", None) or type(error).__name__
        rt.log.warning("greylist: cannot use state/greylist (%s); letting mail through ungreylisted "
                       "until it works again", why)
    _failing = True


def _store_works(rt) -> None:
    global _failing
    if _failing:
        rt.log.info("greylist: state/greylist works again")
    _failing = False


async def expire(rt) -> None:
    """The 'greylist_expiry' worker (one serving process): expired records' files are
    removed soon after start and every EXPIRY_INTERVAL_S (a record is ignored as soon as
    it expires; this only reclaims the files). Greylisting goes on meanwhile."""
    wait = FIRST_EXPIRY_S
    while not rt.stopping.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(rt.stopping.wait(), wait)
        if rt.stopping.is_set():
            return
        wait = EXPIRY_INTERVAL_S
        try:
            removed = await rt.run_blocking(Greylist(rt.root, rt.settings.greylist).flush)
        except OSError as e:
            rt.log.warning("greylist: expiry: %s", e.strerror or type(e).__name__)
            continue
        if removed:
            rt.log.info("greylist: %d expired record(s) removed", removed)
