#!/usr/bin/env python3
"""The cost of the message-authentication stage (engine/accept/authcheck.py) per message:
checks off (and a loopback client, ignored by default), and checks on (SPF pass, one RSA
DKIM signature, DMARC pass) against the test DNS server on loopback, whose answers (TTL
300 s) the checks' resolver keeps after the first message: what this measures is our CPU,
not the network's latency (each mode warmed up first; the same client and sender each
time, so SPF's result is the one kept from the first message).

    python bench/mailauth_cost.py [--count 300]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=300)
    args = ap.parse_args()
    from dnsserver import DNSServer
    from engine import settings as settings_mod
    from engine.accept import authcheck
    from engine.accept.arrival import SMTP, Arrival, Envelope
    from helpers_mailauth import Key, mail

    key = Key("rsa")
    dns_server = DNSServer({"bench.example": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
                            "_dmarc.bench.example": {"TXT": ["v=DMARC1; p=reject"]}},
                           ttl=300)      # kept by the checks' resolver: as a busy server asks
    key.publish(dns_server, "s1", "bench.example")
    message = key.sign(mail("a@bench.example", "bench", "x" * 76 + "\r\n" * 50), "s1", "bench.example")

    def run(client_ip: str, **values) -> float:
        settings, problems = settings_mod.validate({"queue": {"nameservers": [dns_server.address]},
                                                    "mailauth": values}, "", "bench")
        assert not problems, problems

        def check(count: int) -> None:
            for _ in range(count):
                env = Envelope(source=SMTP, sender="a@bench.example", recipients=["b@example.com"],
                               client_ip=client_ip, helo="mx.bench.example", txid="t")
                authcheck.check_authentication(Arrival(env, message, None, settings, None))
        check(20)               # warm: imports, the public suffix list, the first DNS answers
        start = time.perf_counter()
        check(args.count)
        return (time.perf_counter() - start) / args.count * 1e6

    print(f"checks off:            {run('192.0.2.1', spf=False, dkim=False, dmarc=False):8.1f} us/message")
    print(f"loopback client:       {run('127.0.0.1'):8.1f} us/message")
    print(f"SPF + DKIM + DMARC on: {run('192.0.2.1'):8.1f} us/message")
    print(f"SPF only:              {run('192.0.2.1', dkim=False, dmarc=False):8.1f} us/message")
    dns_server.close()


if __name__ == "__main__":
    main()
