"""`mailctl check message FILE --ip --helo --from`: the port 25 checks on a file, with
the server's DNS settings (here the loopback DNS server)."""
from __future__ import annotations

import json

from conftest import run_cli
from dnsserver import DNSServer
from helpers_mailauth import Key, mail
from helpers_server import make_root


def test_check_message_prints_the_header_and_the_reply(tmp_path):
    key = Key("ed25519")
    dns_server = DNSServer({"reject.example": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"],
                                               "MX": [(10, "mx.reject.example")]},     # passes helo_checks
                            "_dmarc.reject.example": {"TXT": ["v=DMARC1; p=reject"]}})
    key.publish(dns_server, "ed", "reject.example")
    try:
        root = make_root(tmp_path, settings={"queue.nameservers": [dns_server.address],
                                             "server.hostname": "mx.example.com"})
        forged = tmp_path / "forged.eml"
        forged.write_bytes(mail("ceo@reject.example", "pay this").replace(b"\r\n", b"\n"))
        r = run_cli(root, "check", "message", str(forged), "--ip", "198.51.100.7", "--helo", "x.example",
                    "--from", "ceo@reject.example")
        assert r.code == 0, r.err
        assert "Authentication-Results: mx.example.com;" in r.out and "spf=fail" in r.out
        assert "dmarc=fail (p=reject dis=REJECT) header.from=reject.example" in r.out
        assert r.out.rstrip().endswith("550 5.7.1 Rejected by the DMARC policy of reject.example: "
                                       "the message is not authenticated by it (SPF and DKIM not aligned)")
        signed = tmp_path / "signed.eml"
        signed.write_bytes(key.sign(mail("ceo@reject.example", "forwarded"), "ed", "reject.example"))
        r = run_cli(root, "check", "message", str(signed), "--ip", "198.51.100.7", "--from",
                    "ceo@reject.example", "--json")
        out = json.loads(r.out)
        assert "dkim=pass" in out["authentication_results"] and out["reply"] == "250 accepted"
        r = run_cli(root, "check", "message", str(signed), "--ip", "not-an-ip")
        assert r.code == 1 and r.err.count("\n") == 1 and "not an IP address" in r.err
    finally:
        dns_server.close()
