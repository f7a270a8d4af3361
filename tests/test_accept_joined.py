"""The merged acceptance stages together, end to end (a real server on 127.0.0.1, the
loopback DNS server, clients from other loopback addresses): HELO-check points and DNSBL
points add up to Junk or a refusal; an IP range's spam_checks / virus_checks switches turn
those stages off for its clients; mail from an incoming relay is not judged by the
relay's address at RCPT, but its original client is asked of the DNSBL after DATA; a
block list's reject text never refuses mail to postmaster (RFC 5321 §4.5.1)."""
from __future__ import annotations

import smtplib

from helpers_dnsbl import BOB, block_list, delivered, list_server, listed, message, send

POSTMASTER = "postmaster@example.com"
ACCOUNTS = {BOB: "bob-password-1", POSTMASTER: "postmaster-password-1"}
# only the HELO syntax check, for every loopback client
HELO_SCORED = {"helo_checks.ignore_networks": [], "helo_checks.helo_syntax": "score",
               "helo_checks.helo_syntax_score": 2.0, "helo_checks.helo_forged": "off",
               "helo_checks.reverse_dns": "off", "helo_checks.sender_domain": "off"}
LISTED = "127.0.0.23"
ZONE = listed("bl.example", LISTED, "127.0.0.24", "192.0.2.44")


def test_helo_and_dnsbl_points_together_mark_then_refuse(tmp_path):
    lists = [block_list("bl.example", 2.0)]
    with list_server(tmp_path, ZONE, **HELO_SCORED, **{"dnsbl.client_lists": lists, "spam.mark_score": 3.5}) \
            as (srv, _dns, root):
        assert send(srv.ports["smtp"], message("both"), LISTED, helo="nodots")[0] == 250
        assert send(srv.ports["smtp"], message("helo only"), "127.0.0.25", helo="nodots")[0] == 250
        msg = delivered(root, "Junk")["both"]
        status = " ".join(msg["X-Spam-Status"].split())
        assert status.startswith("Yes, score=4.0 required=3.5")
        assert "helo_syntax" in status.lower() or "HELO" in status
        assert "DNSBL_bl.example" in status
        assert "helo only" in delivered(root)               # 2 points alone: under the mark
    with list_server(tmp_path / "reject", ZONE, **HELO_SCORED, **{
            "dnsbl.client_lists": lists, "spam.mark_score": 3.5, "spam.reject_score": 4}) as (srv, _dns, root):
        code, text = send(srv.ports["smtp"], message("refused"), LISTED, helo="nodots")
        assert code == 550 and "5.7.1" in text
        assert send(srv.ports["smtp"], message("good helo"), LISTED, helo="client.example")[0] == 250
        assert "good helo" in delivered(root)


def test_a_range_without_spam_checks_skips_helo_dnsbl_and_score(tmp_path):
    ranges = {"quiet": {"networks": ["127.0.0.24/32"], "spam_checks": False}}
    lists = [block_list("bl.example", 5.0), block_list("refuse.bl.example", reject="listed")]
    zone = {**ZONE, **listed("refuse.bl.example", "127.0.0.24")}
    with list_server(tmp_path, zone, **{**HELO_SCORED, "helo_checks.helo_syntax": "reject"}, **{
            "dnsbl.client_lists": lists, "spam.mark_score": 3, "access.ranges": ranges}) as (srv, dns, root):
        assert send(srv.ports["smtp"], message("quiet range"), "127.0.0.24", helo="nodots")[0] == 250
        assert not [n for n, _ in dns.queries if n.startswith("24.0.0.127.")]
        msg = delivered(root)["quiet range"]
        assert msg["X-Spam-Status"] is None
        assert send(srv.ports["smtp"], message("other"), LISTED, helo="nodots")[0] == 550     # HELO refused


def test_a_range_without_virus_checks_is_not_scanned(tmp_path):
    ranges = {"trusted-scan": {"networks": ["127.0.0.26/32"], "virus_checks": False}}
    scanner = ["/bin/sh", "-c", "echo 'stream: Eicar-Test FOUND'; exit 1", "scan", "%FILE%"]
    with list_server(tmp_path, {}, **{"antivirus.enabled": True, "antivirus.clamd": "", "antivirus.command": scanner,
                                      "access.ranges": ranges}) as (srv, _dns, root):
        assert send(srv.ports["smtp"], message("unscanned"), "127.0.0.26")[0] == 250
        code, text = send(srv.ports["smtp"], message("scanned"), "127.0.0.27")
        assert code == 554, text
        assert list(delivered(root)) == ["unscanned"]


RELAY, ORIGIN = "127.0.61.5", "192.0.2.44"


def relayed(port: int, subject: str, origin: str, rcpts=(BOB,)):
    received = (f"Received: from mx.far.example (mx.far.example [{origin}])\r\n\tby backup.example (Postfix) "
                "with ESMTP id 4Xk; Sat, 05 Dec 2026 07:00:00 +0000\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=(RELAY, 0)) as s:
        s.ehlo("nodots")                 # a HELO the syntax check would refuse from anyone else
        s.mail("carol@sender.example")
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, text
        code, text = s.data(received + message(subject))
        return code, text.decode()


def test_an_incoming_relay_is_judged_by_its_client_after_data(tmp_path):
    zone = {**listed("refuse.bl.example", RELAY, ORIGIN)}
    lists = [block_list("refuse.bl.example", 1.0, reject="{ip} is listed")]
    with list_server(tmp_path, zone, accounts=ACCOUNTS, **{**HELO_SCORED, "helo_checks.helo_syntax": "reject"}, **{
            "dnsbl.client_lists": lists, "access.incoming_relays": ["127.0.61.0/24"], "greylist.enabled": True,
            "greylist.whitelist_networks": []}) as (srv, dns, root):
        port = srv.ports["smtp"]
        assert relayed(port, "clean origin", "192.0.2.45")[0] == 250       # no 451, no HELO refusal
        assert not [n for n, _ in dns.queries if n.startswith("5.61.0.127.")]    # the relay never asked
        code, text = relayed(port, "listed origin", ORIGIN)
        assert (code, text) == (550, f"5.7.1 {ORIGIN} is listed")
        assert relayed(port, "to postmaster", ORIGIN, rcpts=(POSTMASTER,))[0] == 250
        assert list(delivered(root)) == ["clean origin"]
        assert "to postmaster" in delivered(root, user="postmaster")
        assert send(port, message("direct"), RELAY, helo="client.example")[0] == 250    # direct: not asked either


def test_a_dnsbl_reject_text_never_refuses_postmaster(tmp_path):
    lists = [block_list("refuse.bl.example", 1.5, reject="Blocked: {ip}")]
    with list_server(tmp_path, listed("refuse.bl.example", LISTED), accounts=ACCOUNTS,
                     **{"dnsbl.client_lists": lists, "spam.mark_score": 1}) as (srv, _dns, root):
        port = srv.ports["smtp"]
        code, text = send(port, message("to bob"), LISTED)
        assert (code, text) == (550, f"5.7.1 Blocked: {LISTED}")
        with smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=(LISTED, 0)) as s:
            s.ehlo("client.example")
            s.mail("carol@sender.example")
            assert s.rcpt(POSTMASTER)[0] == 250
            assert s.rcpt(BOB)[0] == 550                    # the same transaction: bob still refused
            assert s.data(message("to postmaster"))[0] == 250
        msg = delivered(root, "Junk", user="postmaster")["to postmaster"]     # its score still counts
        assert "refuse.bl.example" in msg["X-Spam-Report"]
