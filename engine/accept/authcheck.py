"""The stage that authenticates inbound mail (port 25): SPF, DKIM, ARC and DMARC
(engine/mailauth/), our Authentication-Results header, and what DMARC's policy says.

Not for authenticated submission, trusted networks, mail injected on this machine, or
clients in mailauth.ignore_networks (loopback by default, as OpenDMARC's IgnoreHosts).
Forged Authentication-Results fields claiming our host name are removed from everything
that comes in by SMTP. A DNS failure is a temperror: at worst a 451, never a 5xx.
"""
from __future__ import annotations

import functools
import ipaddress
import time
from dataclasses import dataclass, field

from ..largemsg import LargeMessage
from ..mailauth import authresults, dkimcheck, dmarc, dnslookup, spfcheck
from ..smtp import policy, replies
from .arrival import SMTP, Arrival
from .verdicts import CONTINUE, AddHeaders, Defer, FileInto, Reject

_RANK = {"none": 0, "quarantine": 1, "reject": 2}


def check_authentication(arrival: Arrival):
    """SPF, DKIM, ARC, DMARC for mail from other servers; the verdict DMARC's policy asks."""
    env = arrival.envelope
    if not env.by_smtp:
        return CONTINUE
    _remove_forged(arrival)
    cfg = arrival.settings.mailauth
    if env.source != SMTP or env.vouched or not (cfg.spf or cfg.dkim or cfg.dmarc):
        return CONTINUE
    if _ignored(env.client_ip, tuple(cfg.ignore_networks)):
        return CONTINUE
    started = time.monotonic()
    found = authenticate(arrival)
    arrival.log.info("mailauth: %s: %s: %s (%.0f ms)", env.client_ip, env.txid, found.summary(),
                     (time.monotonic() - started) * 1000)
    return (AddHeaders((authresults.header(arrival.hostname, found.lines),), on_top=True),
            *decide(found, cfg))


@dataclass
class Found:
    """What the checks found for one message."""
    spf: spfcheck.SPFResult | None = None
    dkim: list = field(default_factory=list)
    dkim_skipped: str = ""            # why DKIM was not checked
    arc: dkimcheck.ARCResult | None = None
    dmarc: list = field(default_factory=list)      # dmarc.Evaluation per From domain
    lines: list[str] = field(default_factory=list)  # the Authentication-Results resinfos

    def summary(self) -> str:
        parts = []
        if self.spf:
            parts.append(f"spf={self.spf.result}")
        parts += [f"dkim={d.result}({_shown(d.domain, 60)})" for d in self.dkim]
        if self.arc and self.arc.result != "none":
            parts.append(f"arc={self.arc.result}")
        parts += [f"dmarc={e.result}({_shown(e.domain, 60)} dis={e.disposition})" for e in self.dmarc]
        return " ".join(parts) or "nothing to check"


def authenticate(arrival: Arrival) -> Found:
    env, cfg = arrival.envelope, arrival.settings.mailauth
    resolver = dnslookup.Budget(dnslookup.resolver_for(arrival.settings), float(cfg.time_limit_s))
    timeout = float(cfg.dns_timeout_s)
    found = Found()
    if cfg.spf:
        # greylisting may have asked already, at RCPT time, in this transaction
        s = found.spf = env.spf or spfcheck.check_spf(resolver, env.client_ip, env.sender, env.helo)
        found.lines.append(authresults.result(
            "spf", s.result, s.reason if s.result != "pass" else "",
            **({"smtp_mailfrom": s.domain} if s.identity == "mailfrom" else {"smtp_helo": s.domain})))
    if cfg.dkim:
        message = _message(arrival, cfg)
        if message is None:
            found.dkim_skipped = f"message over {cfg.dkim_max_message_mb} MB, not verified"
            found.lines.append(authresults.result("dkim", "neutral", found.dkim_skipped))
        else:
            found.dkim = dkimcheck.check_dkim(resolver, message, timeout)
            found.arc = dkimcheck.check_arc(resolver, message, timeout)
            for d in found.dkim:
                found.lines.append(authresults.result("dkim", d.result, d.reason, header_d=d.domain,
                                                      header_s=d.selector, header_b=d.b))
            if found.arc.result != "none" or found.dkim:
                a = found.arc
                found.lines.append(authresults.result("arc", a.result, a.reason or (f"i={a.instance}" if a.instance else ""),
                                                      header_d=a.domain))
    if cfg.dmarc:
        _dmarc(arrival, resolver, found)
    return found


def _dmarc(arrival: Arrival, resolver, found: Found) -> None:
    env = arrival.envelope
    passes = [d.domain for d in found.dkim if d.result == "pass"]
    dkim_temp = any(d.result == "temperror" for d in found.dkim) or bool(found.dkim_skipped)
    spf = found.spf
    spf_result = spf.result if spf else "none"
    spf_domain = spf.domain if spf else (env.sender.rpartition("@")[2] or env.helo)
    domains: list[str] = []
    for address in policy.header_senders(arrival.header_block()):
        domain = address.rpartition("@")[2].strip().lower().rstrip(".")
        if domain and domain not in domains:
            domains.append(domain)
    for domain in domains[:5]:
        e = dmarc.evaluate(resolver, domain, spf_result, spf_domain, passes, dkim_temperror=dkim_temp,
                           spf_temperror=spf_result == "temperror")
        found.dmarc.append(e)
        why = f"p={e.policy} dis={e.disposition.upper()}" if e.result in ("pass", "fail") else e.reason
        found.lines.append(authresults.result("dmarc", e.result, why, header_from=domain))


def check_message(settings, data: bytes, *, ip: str, helo: str, sender: str) -> tuple[bytes, str]:
    """`mailctl check message`: what port 25 would add and answer for this message from
    this client, whatever ignore_networks says: (our Authentication-Results, the reply)."""
    from .arrival import Envelope
    from .verdicts import ENDS
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    env = Envelope(source=SMTP, sender=sender, recipients=[], client_ip=ip, helo=helo)
    arrival = Arrival(env, data, None, settings, None)
    found = authenticate(arrival)
    verdicts = decide(found, settings.mailauth)
    end = next((v for v in verdicts if isinstance(v, ENDS)), None)
    if end is not None:
        reply = end.reply
    elif verdicts:
        reply = f"250 accepted, filed into {verdicts[0].folder}"
    else:
        reply = "250 accepted"
    return authresults.header(arrival.hostname, found.lines), reply


def decide(found: Found, cfg) -> tuple:
    """The verdicts the results ask for under the settings (none: accept as it is)."""
    if found.spf and found.spf.result == "fail" and cfg.spf_fail == "reject":
        return (Reject(replies.spf_refused(_shown(found.spf.domain), _shown(found.spf.reason, 120)), "spf"),)
    worst = None
    for e in found.dmarc:
        if e.result == "temperror" and cfg.defer_on_temperror:
            return (_defer(e.domain),)
        if e.result == "fail" and (worst is None or _RANK[e.disposition] > _RANK[worst.disposition]):
            worst = e
    if worst is None or worst.disposition == "none":
        return ()
    if worst.uncertain:
        # an SPF or DKIM temperror might have been the pass: try again, never refuse
        return (_defer(worst.domain),) if cfg.defer_on_temperror and not found.dkim_skipped else ()
    action = cfg.dmarc_reject if worst.disposition == "reject" else cfg.dmarc_quarantine
    if action == "reject":
        return (Reject(replies.dmarc_refused(_shown(worst.domain)), "dmarc"),)
    if action == "quarantine":
        return (FileInto(cfg.quarantine_folder),)
    return ()


def _defer(domain: str) -> Defer:
    return Defer(replies.dmarc_temperror(_shown(domain)), "dmarc-temperror")


def _message(arrival: Arrival, cfg) -> bytes | None:
    """The message as the sender sent it (without what we put on top), or None when it is
    larger than mailauth.dkim_max_message_mb (it would be read into memory)."""
    content = arrival.content
    limit = int(cfg.dkim_max_message_mb * 1024 * 1024)
    if limit and len(content) - arrival.offset > limit:
        return None
    if isinstance(content, LargeMessage):
        return content.read_all()[arrival.offset:]
    return bytes(content[arrival.offset:])


def _remove_forged(arrival: Arrival) -> None:
    block = arrival.header_block()
    kept, removed = authresults.remove_claiming(block, arrival.hostname)
    if removed:
        arrival.replace_header_block(kept)
        arrival.log.info("mailauth: %s: %s: removed %d Authentication-Results claiming to be ours",
                         arrival.envelope.client_ip, arrival.envelope.txid, removed)


_networks_cache: dict[tuple, list] = {}


@functools.lru_cache(maxsize=4096)
def _ignored(ip: str, networks: tuple) -> bool:
    if not networks or not ip:
        return False
    nets = _networks_cache.get(networks)
    if nets is None:
        nets = _networks_cache[networks] = [ipaddress.ip_network(n, strict=False) for n in networks]
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.version == 6 and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return any(addr in n for n in nets)


def _shown(text: str, limit: int = 100) -> str:
    """Network-given text in a reply line: printable ASCII, bounded."""
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])
