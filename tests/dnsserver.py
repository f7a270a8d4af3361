"""A small real DNS server on 127.0.0.1 for tests (UDP and TCP), built on dnspython.

zone = {"example.net": {"MX": [(10, "mx1.example.net"), ...]},
        "mx1.example.net": {"A": ["127.0.0.2"]},
        "gone.example": "NXDOMAIN", "broken.example": "SERVFAIL",
        "nomail.example": {"MX": [(0, ".")]},
        "sel._domainkey.example.com": {"TXT": ["v=DKIM1; k=rsa; p=..."]},
        "split.example": {"TXT": [("v=spf1 ", "-all")]},      # one record of two strings
        "alias.example": {"CNAME": "target.example"},          # followed for every type
        "slow.example": "TIMEOUT",                             # never answered
        "half.example": {"TXT": ["x"], "TIMEOUT": True},       # other types never answered
        "junk.example": "GARBAGE"}                             # an answer that is not DNS
Names are matched case-insensitively; a known name without the asked type gets NOERROR
with an empty answer (NODATA), an unknown name gets NXDOMAIN.

Every record has TTL `ttl`, 0 unless given (tests change the zone mid-test and expect the
change at once), and NXDOMAIN and NODATA carry an SOA whose TTL and minimum are `ttl` too,
so a resolver caches negative answers exactly as long as positive ones (RFC 2308).
"""
from __future__ import annotations

import socketserver
import struct
import threading

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DNSServer:
    def __init__(self, zone: dict | None = None, host: str = "127.0.0.1", ttl: int = 0):
        self.ttl = ttl
        self.zone: dict = {}
        for name, value in (zone or {}).items():
            self.set(name, value)
        self.queries: list[tuple[str, str]] = []
        outer = self

        class UDP(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                reply = outer.answer(data, udp=True)
                if reply:
                    sock.sendto(reply, self.client_address)

        class TCP(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    head = self.request.recv(2)
                    if len(head) < 2:
                        return
                    (n,) = struct.unpack("!H", head)
                    data = b""
                    while len(data) < n:
                        chunk = self.request.recv(n - len(data))
                        if not chunk:
                            return
                        data += chunk
                    reply = outer.answer(data)
                    if reply:
                        self.request.sendall(struct.pack("!H", len(reply)) + reply)
                except OSError:
                    pass

        self.udp, self.tcp = self._bind_pair(host, UDP, TCP)
        port = self.udp.server_address[1]
        self.host, self.port = host, port
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.udp, self.tcp)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _bind_pair(host, udp_handler, tcp_handler):
        """UDP and TCP on one port. The kernel picks a free UDP port, but its TCP twin
        may be taken (by any other test's socket), so try again with another port."""
        for _ in range(50):
            udp = socketserver.ThreadingUDPServer((host, 0), udp_handler)
            udp.daemon_threads = True
            try:
                tcp = socketserver.ThreadingTCPServer((host, udp.server_address[1]), tcp_handler)
            except OSError:
                udp.server_close()
                continue
            tcp.daemon_threads = True
            return udp, tcp
        raise OSError("no port free for both UDP and TCP")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def set(self, name: str, value) -> None:
        self.zone[name.lower().rstrip(".")] = value

    def answer(self, wire: bytes, udp: bool = False) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        q = query.question[0]
        name = _text(q.name)
        rdtype = dns.rdatatype.to_text(q.rdtype)
        self.queries.append((name, rdtype))
        entry = self.zone.get(name)
        if entry is None or entry == "NXDOMAIN":
            response.set_rcode(dns.rcode.NXDOMAIN)
            self._negative(response, q.name)
        elif entry == "SERVFAIL":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif entry == "TIMEOUT":
            return None
        elif entry == "GARBAGE":
            return wire[:2] + bytes([0x84, 0x00, 0x00, 0x01, 0x00, 0x05]) + b"\xff\x00garbage" * 5
        else:
            owner = q.name
            for _ in range(8):                          # a CNAME chain, loops cut short
                target = entry.get("CNAME") if rdtype != "CNAME" else None
                if not target:
                    break
                target = dns.name.from_text(target.rstrip(".") + ".")
                response.answer.append(dns.rrset.from_text_list(owner, self.ttl, "IN", "CNAME", [target.to_text()]))
                owner = target
                entry = self.zone.get(_text(target))
                if not isinstance(entry, dict):
                    entry = {}
                    break
            if entry.get("TIMEOUT") and rdtype not in entry:
                return None
            values = entry.get(rdtype, [])
            if values:
                texts = []
                for v in values:
                    if rdtype == "MX":
                        pref, host = v
                        texts.append(f"{pref} {host if host == '.' else host.rstrip('.') + '.'}")
                    elif rdtype == "TXT":
                        # long TXT values are split into 255-byte strings; a tuple is the strings
                        parts = (list(v) or [""]) if isinstance(v, (tuple, list)) else \
                            [v[i:i + 255] for i in range(0, len(v), 255)] or [""]
                        texts.append(" ".join('"' + _quoted(p) + '"' for p in parts))
                    elif rdtype in ("PTR", "NS"):
                        texts.append(str(v).rstrip(".") + ".")
                    else:
                        texts.append(str(v))
                response.answer.append(dns.rrset.from_text_list(owner, self.ttl, "IN", rdtype, texts))
            else:
                self._negative(response, owner)
        limit = 65535
        if udp:
            limit = max(512, query.payload) if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            # too big for UDP: answer truncated, the client asks again over TCP
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC
            return truncated.to_wire()

    def _negative(self, response, name) -> None:
        """The SOA of a negative answer (RFC 2308 §3), owned by the name's parent (or the name
        itself at the top), so its TTL is the one a resolver caches the negative answer for."""
        owner = name.parent() if len(name) > 2 else name
        response.authority.append(dns.rrset.from_text_list(
            owner, self.ttl, "IN", "SOA", [f"ns.test. hostmaster.test. 1 3600 600 86400 {self.ttl}"]))

    def close(self) -> None:
        for s in (self.udp, self.tcp):
            s.shutdown()
            s.server_close()

    def resolver(self):
        """A dnspython resolver pointed at this server (for dkimpy verification in tests)."""
        import dns.nameserver
        import dns.resolver
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [dns.nameserver.Do53Nameserver(self.host, self.port)]
        r.lifetime = 5
        return r


def _quoted(text: str) -> str:
    """A TXT string in zone-file syntax: quotes and backslashes escaped, other bytes as \\DDD."""
    out = []
    for b in text.encode("utf-8"):
        c = chr(b)
        out.append("\\" + c if c in '"\\' else c if 32 <= b < 127 else f"\\{b:03d}")
    return "".join(out)


def _text(name) -> str:
    """A name as the zone dict spells it: its labels as they are (no \\DDD escapes), lower case."""
    return ".".join(label.decode("utf-8", "replace") for label in name.labels if label).lower()
