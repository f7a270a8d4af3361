"""MX backup "incoming relays" (access.incoming_relays; engine/access/origin.py and the
incoming_relay stage): mail from a listed relay is checked with the address of the
relay's client, read from the Received field the relay added; a forged or malformed
field gets no trust, and from any other client the field is never read. Our Received
line and the log keep the real peer. A real server with the loopback DNS server (SPF
shows which address the checks used), smtplib from loopback addresses of its own."""
from __future__ import annotations

import smtplib

import pytest

from engine.access.ranges import checks_for
from helpers_mailauth import BOB, auth_server, delivered, ours

RELAY, RELAY2, STRANGER = "127.0.61.5", "127.0.61.6", "127.0.62.5"
ORIGIN = "192.0.2.44"
ZONE = {"far.example": {"TXT": [f"v=spf1 ip4:{ORIGIN} -all"]}}


@pytest.fixture(scope="module")
def relay_srv(tmp_path_factory):
    ranges = {"origin": {"networks": [f"{ORIGIN}/32"], "spam_checks": False}}
    with auth_server(tmp_path_factory.mktemp("relay"), ZONE, **{
            "access.incoming_relays": ["127.0.61.0/24"], "access.ranges": ranges,
            "mailauth.dkim": False, "mailauth.dmarc": False}) as (srv, _dns, _root):
        seen = []

        def record(arrival):
            env = arrival.envelope
            seen.append((env.client_ip, env.peer_ip, checks_for(arrival.settings, env.client_ip)))
            return ()
        srv.runtime.pipeline.add(record, before="mailbox_quota")
        srv.seen = seen
        yield srv


def relayed(srv, ip: str, received: list[str], subject: str):
    """Send a message with these Received fields on top from ip; (client_ip, peer_ip,
    checks_for) the stages saw, and the delivered message."""
    head = "".join(f"Received: {r}\r\n" for r in received)
    data = (f"{head}From: carol@far.example\r\nTo: {BOB}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@far.example>\r\n\r\nHello.\r\n").encode()
    before = len(srv.seen)
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20, source_address=(ip, 0)) as s:
        s.ehlo("backup.example")
        s.sendmail("carol@far.example", [BOB], data)
    [seen] = srv.seen[before:]
    [msg] = [m for m in delivered(srv.root) if m["Subject"] == subject]
    return seen, msg


POSTFIX = f"from mx.far.example (mx.far.example [{ORIGIN}])\r\n\tby backup.example (Postfix) with ESMTP id 4Xk; " \
          "Sat, 05 Dec 2026 07:00:00 +0000"


def test_mail_from_a_relay_is_checked_as_its_client(relay_srv):
    (client, peer, checks), msg = relayed(relay_srv, RELAY, [POSTFIX], "postfix")
    assert (client, peer) == (ORIGIN, RELAY)
    assert checks == (False, True)                      # the original client's range decides
    assert "spf=pass" in ours(msg)                      # far.example allows only ORIGIN
    assert f"[{RELAY}]" in msg.get_all("Received")[0]   # our Received line names the relay


def test_the_same_field_from_another_client_is_not_believed(relay_srv):
    (client, peer, checks), msg = relayed(relay_srv, STRANGER, [POSTFIX], "stranger")
    assert (client, peer) == (STRANGER, "")
    assert "spf=fail" in ours(msg)
    assert checks == (True, True)


@pytest.mark.parametrize("received", [
    ["from mx.far.example (mx.far.example [192.0.2.44]"],            # an unclosed comment
    ["by backup.example with ESMTP; Sat, 05 Dec 2026 07:00:00 +0000"],  # no from-clause
    ["from mx.far.example (no address here) by backup.example"],
    ["from mx.far.example ([999.1.2.3]) by backup.example"],
    [],                                                                 # no Received field at all
], ids=["unclosed", "no-from", "no-address", "bad-address", "none"])
def test_a_malformed_field_from_a_relay_leaves_the_relay_s_address(relay_srv, received):
    (client, peer, _), msg = relayed(relay_srv, RELAY, received, f"bad-{len(received)}-{abs(hash(str(received)))}")
    assert (client, peer) == (RELAY, "")
    assert "spf=fail" in ours(msg)


def test_hops_between_relays_and_inside_one_are_passed_over(relay_srv):
    chain = [f"from backup2.example (backup2.example [{RELAY2}]) by backup.example",
             "from localhost (localhost [127.0.0.1]) by backup2.example (amavis)",
             f"from [10.9.9.9] (mx.far.example [{ORIGIN}]) by backup2.example"]   # HELO literal is not it
    (client, peer, _), _ = relayed(relay_srv, RELAY, chain, "chain")
    assert (client, peer) == (ORIGIN, RELAY)


def test_exim_and_exchange_forms(relay_srv):
    exim = f"from [{ORIGIN}] (helo=mx.far.example) by backup.example with esmtp (Exim 4.96)"
    (client, _, _), _ = relayed(relay_srv, RELAY, [exim], "exim")
    assert client == ORIGIN
    exchange = f"from MX01.far.example ({ORIGIN}) by backup.example (15.2.1118.40) with Microsoft SMTP Server"
    (client, _, _), _ = relayed(relay_srv, RELAY, [exchange], "exchange")
    assert client == ORIGIN
