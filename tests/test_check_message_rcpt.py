"""`mailctl check message --to ADDR ...`: per recipient, the RCPT-time verdicts (where it
resolves, the recipient block list, the HELO checks and block lists as they treat it,
greylisting's would-be verdict, written nowhere), its domain's spam thresholds and its
reply; checked against what the running server (same root, same loopback DNS server)
answers the same client."""
from __future__ import annotations

import json
import smtplib

from conftest import run_cli
from engine import directory_edit
from helpers_dnsbl import BOB, block_list, list_server, listed, message

ANN, PM = "ann@other.example", "postmaster@example.com"
ACCOUNTS = {BOB: "bob-password-1", ANN: "ann-password-1", PM: "postmaster-password-1",
            "blocked@example.com": "blocked-password-1"}
REFUSED_IP, SCORED_IP = "127.0.0.23", "127.0.0.25"
ZONE = {**listed("refuse.bl.example", REFUSED_IP), **listed("score.bl.example", SCORED_IP)}
SETTINGS = {"helo_checks.ignore_networks": [], "helo_checks.helo_syntax": "reject", "helo_checks.helo_forged": "off",
            "helo_checks.reverse_dns": "off", "helo_checks.sender_domain": "off",
            "dnsbl.client_lists": [block_list("refuse.bl.example", 1.5, reject="Blocked: {ip}"),
                                   block_list("score.bl.example", 2.0)],
            "greylist.enabled": True, "greylist.whitelist_networks": [], "mailauth.dns_timeout_s": 0.5,
            "access.block_recipients": ["blocked@example.com"], "spam.mark_score": 5}
RCPTS = (BOB, ANN, PM, "blocked@example.com", "nobody@example.com")


def prepare(root, cfg):
    directory_edit.set_domain(root, cfg, "other.example", spam_mark_score=1.5, greylisting=False)


def explained(root, tmp_path, ip: str, helo: str = "client.example", *extra: str) -> dict:
    msg = tmp_path / "m.eml"
    msg.write_bytes(message("checked"))
    args = ["check", "message", str(msg), "--ip", ip, "--helo", helo, "--from", "carol@sender.example",
            *[a for r in RCPTS for a in ("--to", r)], *extra]
    r = run_cli(root, *args)
    assert r.code == 0, r.err
    return r.out if not extra else json.loads(r.out)


def server_replies(port: int, ip: str, helo: str = "client.example") -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=(ip, 0)) as s:
        s.ehlo(helo)
        s.mail("carol@sender.example")
        return {r: s.rcpt(r)[0] for r in RCPTS}


def test_each_recipient_gets_the_servers_verdict(tmp_path):
    with list_server(tmp_path, ZONE, accounts=ACCOUNTS, domains=("example.com", "other.example"), prepare=prepare,
                     **SETTINGS) as (srv, _dns, root):
        scored = explained(root, tmp_path, SCORED_IP, "client.example", "--json")
        by = {r["address"]: r for r in scored["recipients"]}
        assert by[BOB]["greylisting"] == {"verdict": "defer", "why": "record new"}
        assert by[BOB]["reply"] == "451 4.7.1 Please Try Again Later"
        assert by[ANN]["greylisting"]["why"] == "greylisting off for other.example"
        assert by[ANN]["thresholds"] == {"scoring": True, "mark": 1.5, "reject": 0.0}
        assert by[BOB]["thresholds"] == {"scoring": True, "mark": 5.0, "reject": 0.0}
        assert (by[ANN]["spam"]["total"], by[ANN]["spam"]["verdict"]) == (2.0, "junk")
        assert by[ANN]["reply"] == "250 accepted, filed into Junk"
        assert by[PM]["greylisting"]["why"] == "postmaster" and by[PM]["reply"] == "250 accepted"
        assert by["blocked@example.com"]["access"]["refused"] == "recipient matches blocked@example.com"
        assert by["blocked@example.com"]["reply"].startswith("550 5.7.1 Recipient Address Rejected")
        assert by["nobody@example.com"]["reply"].startswith("550") and by["nobody@example.com"]["resolves_to"] is None
        assert not list((root.state_dir / "greylist").glob("*/*")) and not list((root.state_dir / "greylist").glob("*.*"))
        codes = {a: int(r["reply"][:3]) for a, r in by.items()}
        assert server_replies(srv.ports["smtp"], SCORED_IP) == codes

        refused = explained(root, tmp_path, REFUSED_IP, "nodots", "--json")
        by = {r["address"]: r for r in refused["recipients"]}
        assert by[BOB]["reply"] == "550 5.7.1 Rejected: HELO name is not a fully qualified domain name" or \
            by[BOB]["reply"].startswith("550 5.7.1 Rejected: HELO")
        pm_helo = {c["check"]: c for c in by[PM]["helo_checks"]}["helo_syntax"]
        assert pm_helo["result"] == "score"                  # postmaster: scored, never refused
        assert by[PM]["reply"] == "250 accepted"
        codes = {a: int(r["reply"][:3]) for a, r in by.items()}
        assert server_replies(srv.ports["smtp"], REFUSED_IP, "nodots") == codes

        good_helo = explained(root, tmp_path, REFUSED_IP, "client.example", "--json")
        by = {r["address"]: r for r in good_helo["recipients"]}
        assert by[BOB]["reply"] == f"550 5.7.1 Blocked: {REFUSED_IP}"      # the list's reject text, at RCPT
        assert by[PM]["reply"] == "250 accepted" and by[PM]["spam"]["total"] == 1.5
        codes = {a: int(r["reply"][:3]) for a, r in by.items()}
        assert server_replies(srv.ports["smtp"], REFUSED_IP) == codes


def test_human_output_explains_each_recipient(tmp_path):
    with list_server(tmp_path, ZONE, accounts=ACCOUNTS, domains=("example.com", "other.example"), prepare=prepare,
                     **SETTINGS) as (_srv, _dns, root):
        out = explained(root, tmp_path, SCORED_IP)
    block = out[out.index(f"to <{ANN}>:"):out.index(f"to <{PM}>:")].splitlines()
    assert block[0] == f"to <{ANN}>: resolves to {ANN}"
    assert "  greylisting: pass (greylisting off for other.example)" in block
    assert "  spam thresholds: mark 1.5, reject never" in block
    assert "  spam: score 2.0 (mark 5, reject never): junk" in block
    assert block[-1] == "  reply: 250 accepted, filed into Junk"
