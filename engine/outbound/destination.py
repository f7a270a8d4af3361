"""Delivery of one message to one destination domain: the places to try (its route, or
its MX hosts in order, and each host's addresses), the check that a place is not this
server itself, and one SMTP transaction per place, on a pooled connection or a new one
(a new one when the pooled one was dropped; plain text once when opportunistic TLS
breaks, as Postfix does). Every recipient ends with the reply that decides it."""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from dataclasses import dataclass

from ..queue import Envelope, Recipient
from . import mx
from .client import Connection, Reply, SMTPError, unverified_context, verified_context
from .pool import ConnectionPool
from .routes import Route, Router

LOOP_TEXT = "The Mail Server Software Tried To Deliver E-mail To The Local Machine"


@dataclass
class Target:
    """One place to try: a host name, the port and how to talk to it."""
    host: str
    port: int
    tls: str                  # "opportunistic", "none", "starttls", "implicit"
    verify: bool
    route: Route | None


def local_addresses() -> set[str]:
    out = set()
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            out.add(info[4][0])
    return out


class Deliverer:
    """Delivers groups of recipients to their destination. The runner hands it the router
    and resolver made from the current settings (configure) and owns the pool it uses."""

    def __init__(self, runtime, pool: ConnectionPool, blocking):
        self.runtime = runtime
        self.root = runtime.root
        self.pool = pool
        self.blocking = blocking
        self.router: Router | None = None
        self.resolver = None
        self._local = local_addresses()
        self._tls_cache: dict = {}         # client TLS contexts of the current settings

    @property
    def settings(self):
        return self.runtime.settings

    def configure(self, router: Router, resolver) -> None:
        self.router, self.resolver = router, resolver

    async def targets(self, domain: str) -> list[Target]:
        """The places to try for domain, in order. Raises mx.DNSFailure."""
        s = self.settings
        verify = domain in [d.lower().rstrip(".") for d in s.queue.require_tls_domains]
        route = self.router.for_domain(domain)
        if route is not None:
            return [Target(route.host, route.port, route.tls, verify, route)]
        hosts = await mx.lookup_mx(self.resolver, domain)
        tls = "starttls" if verify else "opportunistic"
        return [Target(h.name, s.queue.smtp_port, tls, verify, None) for h in hosts]

    def is_loop(self, ip: str, port: int) -> bool:
        """Would connecting to ip:port reach this server's own SMTP listener?"""
        s = self.settings
        ports = set()
        binds = set()
        for name in ("smtp", "submission", "submissions"):
            lst = getattr(s.listeners, name, None)
            if lst is not None and lst.enabled:
                ports.add(lst.port)
                binds.update(lst.bind)
        for name, bound in (getattr(self.runtime, "ports", {}) or {}).items():
            if name in ("smtp", "submission", "submissions"):
                for host, p in bound:
                    ports.add(p)
                    binds.add(host)
        if port not in ports:
            return False
        addr = ipaddress.ip_address(ip)
        return addr.is_loopback or addr.is_unspecified or ip in binds or ip in self._local

    async def deliver(self, env: Envelope, domain: str, rcpts: list[Recipient], wire: bytes,
                            eightbit: bool) -> None:
        def mark(r: Recipient, reply: Reply, remote: str) -> None:
            r.code, r.reply, r.remote = reply.code, str(reply), remote
            r.dsn = reply.enhanced
            r.status = "sent" if 200 <= reply.code < 300 else "failed" if reply.code >= 500 else "deferred"

        def mark_all(reply: Reply, remote: str = "", code_known: bool = True) -> None:
            for r in rcpts:
                mark(r, reply, remote)
                if not code_known:
                    r.code = 0
                    r.reply = reply.text

        try:
            targets = await self.targets(domain)
        except mx.DNSFailure as e:
            code = 550 if e.permanent else 451
            mark_all(Reply(code, f"{e.status} {e}"), code_known=False)
            return
        last: Reply | None = None
        last_remote = ""
        for t in targets:
            try:
                addrs = await mx.lookup_addresses(self.resolver, t.host)
            except mx.DNSFailure as e:
                if e.permanent and len(targets) == 1 and t.route is None:
                    mark_all(Reply(550, f"{e.status} {e}"), code_known=False)
                    return
                last, last_remote = Reply(451, f"{e.status} {e}"), ""
                continue
            for ip in addrs:
                if self.is_loop(ip, t.port) and self.router.backup_mx(domain):
                    # we are one of the domain's MX hosts (backup MX): skip ourselves and
                    # wait for a better one to come back
                    last, last_remote = Reply(451, f"4.4.1 no MX host of {domain} better than this server "
                                                   f"is reachable"), ""
                    continue
                if self.is_loop(ip, t.port):
                    mark_all(Reply(550, f"5.4.6 {LOOP_TEXT} ({t.host} [{ip}]:{t.port} is this server)"),
                             code_known=False)
                    return
                result = await self._try_host(env, t, ip, rcpts, wire, eightbit)
                if result is None:
                    return                       # replies recorded per recipient
                last, last_remote = result, f"{t.host} [{ip}]"
                if last.code >= 500 and last.code != 554:
                    # a permanent refusal of the whole transaction (MAIL FROM)
                    mark_all(last, last_remote)
                    return
        if last is None:
            last = Reply(451, "4.4.1 no destination host could be reached")
        for r in rcpts:
            r.status, r.code, r.reply, r.remote = "deferred", (last.code if last.code < 500 else 451), str(last), last_remote
            r.dsn = last.enhanced if last.enhanced.startswith("4") else "4.4.1"
            if not last_remote:
                r.code, r.reply = 0, last.text

    async def _connect(self, t: Target, ip: str, plain_fallback: bool = False) -> Connection:
        s = self.settings.queue
        helo = s.helo_name or self.settings.server.hostname
        ctx = self._tls_context(t.verify) if t.tls != "none" else None
        implicit = ctx if t.tls == "implicit" else None
        conn = await Connection.open(t.host, ip, t.port, timeout=float(s.connect_timeout_s),
                                     command_timeout=float(s.command_timeout_s),
                                     source_address=s.source_address, implicit_tls=implicit)
        try:
            await conn.ehlo(helo)
            if t.tls in ("starttls", "opportunistic") and not conn.tls and not plain_fallback:
                if "STARTTLS" in conn.features:
                    await conn.starttls(ctx, helo)
                elif t.tls == "starttls":
                    raise SMTPError(Reply(451, f"4.7.4 TLS is required for this destination but {t.host} "
                                               f"does not offer STARTTLS"), "STARTTLS")
            if t.route is not None and t.route.username:
                password = await self.blocking(t.route.password, self.root)
                await conn.auth(t.route.username, password)
        except BaseException:
            await conn.close()
            raise
        return conn

    def _tls_context(self, verify: bool):
        """Client TLS contexts are made once per settings (loading CAs is slow)."""
        cache = self._tls_cache
        if cache.get("settings") is not self.settings:
            cache.clear()
            cache["settings"] = self.settings
        if verify not in cache:
            cache[verify] = verified_context(self.settings.queue.tls_ca_file) if verify else unverified_context()
        return cache[verify]

    async def _try_host(self, env: Envelope, t: Target, ip: str, rcpts: list[Recipient], wire: bytes,
                        eightbit: bool) -> Reply | None:
        """Deliver rcpts through one address. None when every recipient got a reply;
        else the reply (or synthesized error) that made this host fail."""
        key = (ip, t.port, t.tls, t.route.username if t.route else "")
        remote = f"{t.host} [{ip}]"
        for attempt in ("pooled", "fresh", "plain"):
            conn = None
            if attempt == "pooled":
                conn = self.pool.get(key)
                if conn is None:
                    continue
            else:
                try:
                    conn = await self._connect(t, ip, plain_fallback=(attempt == "plain"))
                except SMTPError as e:
                    if e.stage == "AUTH":       # a relay refusing our login: retry later, as Postfix does
                        return Reply(454, f"4.7.0 {t.host} refused our login: {e.reply}")
                    return e.reply
                except ssl.SSLError as e:
                    if t.tls == "opportunistic" and attempt == "fresh":
                        continue        # broken TLS: try once more in plain text, as Postfix does
                    return Reply(451, f"4.7.5 TLS with {remote} failed: {e.reason or e}")
                except (OSError, asyncio.TimeoutError) as e:
                    why = e.strerror if isinstance(e, OSError) and e.strerror else (str(e) or type(e).__name__)
                    return Reply(451, f"4.4.1 cannot connect to {remote}:{t.port}: {why}")
            try:
                per, final = await conn.transaction(env.sender, [r.address for r in rcpts], wire, eightbit)
            except SMTPError as e:
                await conn.close()
                if attempt == "pooled":
                    continue            # the server dropped an idle connection: open a new one
                return e.reply
            except (OSError, asyncio.TimeoutError) as e:
                await conn.close()
                if attempt == "pooled":
                    continue
                return Reply(451, f"4.4.2 connection to {remote} lost: {e}")
            for r in rcpts:
                reply = per.get(r.address)
                if reply is None or reply.code not in (250, 251):
                    reply = reply or Reply(451, "4.4.2 no reply to RCPT")
                elif final is not None:
                    reply = final
                r.code, r.reply, r.remote, r.dsn = reply.code, str(reply), remote, reply.enhanced
                r.status = ("sent" if 200 <= reply.code < 300 else "failed" if reply.code >= 500
                            else "deferred")
            self.pool.put(key, conn)
            return None
        return Reply(451, f"4.4.1 cannot deliver through {remote}")
