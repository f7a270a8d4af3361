"""`mailctl check message FILE --ip --helo --from` shows the HELO and sender checks'
verdicts ([helo_checks]) beside the authentication results, with the server's DNS
(the loopback DNS server)."""
from __future__ import annotations

import json

from conftest import run_cli
from dnsserver import DNSServer
from helpers_mailauth import mail
from helpers_server import make_root

ZONE = {"7.100.51.198.in-addr.arpa": {"PTR": ["far.example.net"]}, "far.example.net": {"A": ["198.51.100.7"]},
        "far.example.org": {"MX": [(10, "mx.far.example.org")]},
        "nullmx.example.org": {"MX": [(0, ".")]}, "slow.example.org": "TIMEOUT"}


def helo_lines(out: str) -> list[str]:
    """The HELO and sender checks' lines and the reply (the last line): the spam score's,
    virus scan's and attachments' lines between them are other tests'."""
    lines = out.splitlines()
    return [x for x in lines[:-1] if not x.startswith(("spam:", "Virus scan:", "Attachments:"))] + lines[-1:]


def test_check_message_explains_each_check(tmp_path):
    dns = DNSServer(ZONE)
    try:
        root = make_root(tmp_path, settings={"queue.nameservers": [dns.address], "server.hostname": "mx.example.com",
                                             "mailauth.dns_timeout_s": 0.5, "helo_checks.reverse_dns": "reject"})
        msg = tmp_path / "m.eml"
        msg.write_bytes(mail("carol@far.example.org"))
        r = run_cli(root, "check", "message", str(msg), "--ip", "198.51.100.7", "--helo", "far.example.net",
                    "--from", "carol@far.example.org")
        assert r.code == 0, r.err
        lines = helo_lines(r.out)
        assert lines[-5:] == ["helo_syntax: pass", "helo_forged: pass", "reverse_dns: pass", "sender_domain: pass",
                              "250 accepted"]
        # every check has something to say; the first refusal is the reply (at RCPT TO)
        r = run_cli(root, "check", "message", str(msg), "--ip", "198.51.100.8", "--helo", "mx.example.com",
                    "--from", "carol@nullmx.example.org")
        assert helo_lines(r.out)[-5:] == [
            "helo_syntax: pass", "helo_forged: score +3: HELO names our host name",
            "reverse_dns: reject: client 198.51.100.8 has no reverse DNS (PTR)",
            "sender_domain: reject: sender domain nullmx.example.org has a null MX (accepts no mail)",
            "550 5.7.1 Rejected: client 198.51.100.8 has no reverse DNS (PTR)"]
        r = run_cli(root, "check", "message", str(msg), "--ip", "198.51.100.7", "--helo", "[198.51.100.9]",
                    "--from", "carol@slow.example.org", "--json")
        out = json.loads(r.out)
        assert out["reply"] == "250 accepted"
        assert out["helo_checks"][0] == {"check": "helo_syntax", "mode": "score", "result": "score", "points": 1.0,
                                         "why": "HELO address literal is not the client's address", "reply": ""}
        assert out["helo_checks"][3] == {"check": "sender_domain", "mode": "reject", "result": "unsure",
                                         "points": 0, "why": "sender domain slow.example.org: DNS timeout",
                                         "reply": ""}
        r = run_cli(root, "check", "message", str(msg), "--ip", "198.51.100.7", "--from", "carol@far.example.org")
        assert helo_lines(r.out)[-5:-3] == ["helo_syntax: skipped: no HELO name given",
                                             "helo_forged: skipped: no HELO name given"]
    finally:
        dns.close()
