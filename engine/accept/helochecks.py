"""The HELO and sender checks (RCPT time, port 25; settings [helo_checks]), four stages:

  helo_syntax    the HELO/EHLO name is a fully qualified domain name or an address
                 literal of the client (engine/heloname.py)
  helo_forged    a client names us in HELO: our host name, a local domain, our address
  reverse_dns    forward-confirmed reverse DNS of the client (engine/mailauth/fcrdns.py)
  sender_domain  the MAIL FROM domain has an MX, or an A/AAAA; a null MX counts as none

Each, as configured, adds a Score (the spam-score stage weighs the sum after DATA) or
refuses the recipient with 550; 'off' asks nothing. Only mail from other servers is
checked: never authenticated clients, the submission ports, trusted networks or
helo_checks.ignore_networks; injected mail never meets RCPT-time stages. A check set to
'reject' only scores mail to postmaster (RFC 5321 §4.5.1: it must reach someone).

The HELO and reverse-DNS answers hold for the connection (kept in Client.memo, asked
once however many transactions and recipients follow), the sender domain's for the
transaction. A DNS failure decides nothing: no score, no refusal, one log line.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import heloname
from ..mailauth import dnslookup, fcrdns
from ..smtp import policy, replies
from . import clientgate
from .rcpt import to_postmaster
from .verdicts import CONTINUE, Reject, Score

SYNTAX, FORGED, RDNS, SENDER = "helo_syntax", "helo_forged", "reverse_dns", "sender_domain"
CHECKS = (SYNTAX, FORGED, RDNS, SENDER)


@dataclass(frozen=True)
class Finding:
    """What one check found: problem '' when all is well; unsure when DNS failed."""
    problem: str = ""
    reply: str = ""               # the refusal when the check is set to 'reject'
    unsure: str = ""              # why nothing could be decided (DNS timeout, SERVFAIL)


FINE = Finding()


# -- the findings (plain functions; `mailctl check message` runs them too) ------------------

def syntax_finding(helo: str, client_ip: str) -> Finding:
    problem = heloname.syntax_problem(helo, client_ip)
    return Finding(problem, replies.client_check_refused(problem)) if problem else FINE


def forged_finding(settings, directory, helo: str, client_ip: str, local_ip: str) -> Finding:
    names = (settings.server.hostname, settings.queue.helo_name)
    is_local = directory.is_local_domain if directory is not None else (lambda _: False)
    problem = heloname.names_us(helo, client_ip, names, [local_ip] if local_ip else [], is_local)
    if not problem:
        return FINE
    return Finding(problem, replies.client_check_refused(f"{problem}, and you are not this server"))


def reverse_dns_finding(resolver, client_ip: str) -> Finding:
    """Blocking (DNS)."""
    found = fcrdns.reverse_dns(resolver, client_ip)
    if found.result == fcrdns.TEMPERROR:
        return Finding(unsure=f"reverse DNS of {client_ip}: {found.why}")
    if found.result == fcrdns.NONE:
        problem = f"client {client_ip} has no reverse DNS (PTR)"
    elif found.result == fcrdns.MISMATCH:
        problem = f"reverse DNS of client {client_ip} ({_shown(found.name)}) does not resolve back to it"
    else:
        return FINE
    return Finding(problem, replies.client_check_refused(problem))


def sender_domain_finding(resolver, directory, sender: str) -> Finding:
    """Blocking (DNS). The null sender and our own domains are not asked about."""
    domain = sender.rpartition("@")[2].lower()
    if not sender or not domain or (directory is not None and directory.is_local_domain(domain)):
        return FINE
    found = fcrdns.sender_domain(resolver, domain)
    shown = _shown(domain)
    if found.result == fcrdns.TEMPERROR:
        return Finding(unsure=f"sender domain {shown}: {found.why}")
    if found.result == fcrdns.RECEIVES:
        return FINE
    null_mx = found.result == fcrdns.NULL_MX
    problem = f"sender domain {shown} " + ("has a null MX (accepts no mail)" if null_mx
                                            else "has neither MX nor A/AAAA records")
    return Finding(problem, replies.sender_domain_refused(shown, null_mx))


def verdict(cfg, name: str, finding: Finding, postmaster: bool = False):
    """What a finding becomes under the settings: CONTINUE, Score or Reject. For mail to
    postmaster (postmaster=True) a 'reject' check scores instead."""
    mode = getattr(cfg, name)
    if mode == "off" or finding.unsure or not finding.problem:
        return CONTINUE
    if mode == "reject" and not postmaster:
        return Reject(finding.reply, name)
    return Score(float(getattr(cfg, f"{name}_score")), finding.problem)


def resolver(settings):
    """The resolver of one check: mailauth's servers, timeouts and total time limit."""
    return dnslookup.Budget(dnslookup.resolver_for(settings), float(settings.mailauth.time_limit_s))


def explain(settings, directory, *, ip: str, helo: str, sender: str, local_ip: str = "",
            postmaster: bool = False) -> list[dict]:
    """`mailctl check message`: what each check says of this client, HELO and sender (to
    postmaster when postmaster=True), whatever ignore_networks says (blocking: DNS). One dict per check: check, mode,
    result ('off', 'pass', 'unsure', 'score', 'reject', or 'skipped' for the HELO checks
    without a HELO name), points, why, reply."""
    cfg = settings.helo_checks
    found = {SYNTAX: lambda: syntax_finding(helo, ip),
             FORGED: lambda: forged_finding(settings, directory, helo, ip, local_ip),
             RDNS: lambda: reverse_dns_finding(resolver(settings), ip),
             SENDER: lambda: sender_domain_finding(resolver(settings), directory, sender)}
    out = []
    for name in CHECKS:
        mode = getattr(cfg, name)
        if not helo and name in (SYNTAX, FORGED):        # no --helo: nothing to say of it
            out.append({"check": name, "mode": mode, "result": "skipped", "points": 0, "why": "no HELO name given",
                        "reply": ""})
            continue
        finding = FINE if mode == "off" else found[name]()
        said = verdict(cfg, name, finding, postmaster)
        result = ("off" if mode == "off" else "unsure" if finding.unsure else "reject" if isinstance(said, Reject)
                  else "score" if isinstance(said, Score) else "pass")
        out.append({"check": name, "mode": mode, "result": result,
                    "points": said.points if isinstance(said, Score) else 0,
                    "why": finding.unsure or finding.problem, "reply": said.reply if isinstance(said, Reject) else ""})
    return out


# -- the stages ---------------------------------------------------------------------------

async def helo_syntax(check):
    if not _applies(check, SYNTAX):
        return CONTINUE
    finding = _per_connection(check, (SYNTAX, check.helo), lambda: syntax_finding(check.helo, check.client.ip))
    return _decide(check, SYNTAX, finding)


async def helo_forged(check):
    if not _applies(check, FORGED):
        return CONTINUE
    rt, client = check.runtime, check.client
    finding = _per_connection(check, (FORGED, check.helo), lambda: forged_finding(
        rt.settings, rt.directory, check.helo, client.ip, client.local_ip))
    return _decide(check, FORGED, finding)


async def reverse_dns(check):
    if not _applies(check, RDNS):
        return CONTINUE
    rt, memo = check.runtime, check.client.memo
    if RDNS not in memo:          # the same for every transaction of the connection
        memo[RDNS] = await _with_dns(rt, reverse_dns_finding, check.client.ip)
    return _decide(check, RDNS, memo[RDNS])


async def sender_domain(check):
    if not _applies(check, SENDER):
        return CONTINUE
    rt, memo = check.runtime, check.transaction
    if SENDER not in memo:
        memo[SENDER] = await _with_dns(rt, sender_domain_finding, rt.directory, check.sender)
    return _decide(check, SENDER, memo[SENDER])


async def _with_dns(rt, find, *args) -> Finding:
    """find(resolver, *args): at once from the DNS answers kept in memory when they are all
    there, else in a worker thread (it waits for DNS)."""
    try:
        return find(dnslookup.CacheOnly(dnslookup.resolver_for(rt.settings)), *args)
    except dnslookup.NotKept:
        return await rt.run_blocking(find, resolver(rt.settings), *args)


def _applies(check, name: str) -> bool:
    client, settings = check.client, check.runtime.settings
    if getattr(settings.helo_checks, name) == "off":
        return False
    if client.listener != "smtp" or client.user or client.trusted:
        return False
    if not clientgate.spam_checks_run(settings, client.ip):          # its IP range: spam checks off
        return False
    if name != SENDER and clientgate.from_incoming_relay(settings, client.ip):     # our backup MX's address, HELO
        return False
    return not policy.in_networks(client.ip, settings.helo_checks.ignore_networks)


def _per_connection(check, key: tuple, find) -> Finding:
    memo = check.client.memo
    if key not in memo:
        memo[key] = find()
    return memo[key]


def _decide(check, name: str, finding: Finding):
    rt = check.runtime
    if finding.unsure:
        _note(check, name, "unsure", finding.unsure)
        return CONTINUE
    result = verdict(rt.settings.helo_checks, name, finding, to_postmaster(check.result))
    if isinstance(result, Reject):
        _note(check, name, "rejected", finding.problem)
        return Reject(result.reply, f"{check.address[:100]}={name}")
    if isinstance(result, Score):
        _note(check, name, "scored", finding.problem, f" {result.points:g}")
    return result


def _note(check, name: str, what: str, why: str, points: str = "") -> None:
    """Log and count a verdict once per transaction, however many recipients repeat it."""
    noted = check.transaction.setdefault("helo_checks_noted", set())
    if (name, what) in noted:
        return
    noted.add((name, what))
    rt = check.runtime
    rt.count(f"{name}_{what}")
    log = rt.log.warning if what == "unsure" else rt.log.info
    log("helo_checks: %s: helo=%s from=<%s>: %s %s%s: %s", check.client.ip, _shown(check.helo),
        _shown(check.sender), name, what, points, why)


def _shown(text: str, limit: int = 100) -> str:
    """Network-given text in a reply or log line: printable ASCII, bounded."""
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])
