"""SPF on port 25 (RFC 7208): a real server, smtplib from 127.0.0.1, and the loopback DNS
server serving the records; every result lands in our Authentication-Results."""
from __future__ import annotations

import smtplib

import pytest

from helpers_mailauth import BOB, HOST, auth_results, auth_server, delivered, mail, only, ours, send

INCLUDES = {f"i{n}.chain.example": {"TXT": [f"v=spf1 include:i{n + 1}.chain.example -all"]} for n in range(12)}
ZONE = {
    "pass.example": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
    "fail.example": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
    "soft.example": {"TXT": ["v=spf1 ~all"]},
    "neutral.example": {"TXT": ["v=spf1 ?all"]},
    "none.example": {"A": ["192.0.2.9"]},
    "include.example": {"TXT": ["v=spf1 include:pass.example -all"]},
    "redirect.example": {"TXT": ["v=spf1 redirect=pass.example"]},
    "macro.example": {"TXT": ["v=spf1 exists:%{i}.%{l}.allow.macro.example -all"]},
    "127.0.0.1.carol.allow.macro.example": {"A": ["127.0.0.2"]},
    "void.example": {"TXT": ["v=spf1 a:n1.void.example a:n2.void.example a:n3.void.example ip4:127.0.0.1 -all"]},
    "loop.example": {"TXT": ["v=spf1 include:loop.example -all"]},
    "chain.example": {"TXT": ["v=spf1 include:i0.chain.example -all"]},
    **INCLUDES,
    "slow.example": "TIMEOUT",
    "garbage.example": "GARBAGE",
    "broken.example": {"TXT": ["v=spf1 ip4:999.1.1.1 -all"]},
    "helo.example": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with auth_server(tmp_path_factory.mktemp("spf"), ZONE) as s:
        yield s


@pytest.mark.parametrize("domain, result", [
    ("pass.example", "pass"), ("fail.example", "fail"), ("soft.example", "softfail"),
    ("neutral.example", "neutral"), ("none.example", "none"), ("nxdomain.example", "none"),
    ("include.example", "pass"), ("redirect.example", "pass"), ("macro.example", "pass"),
    ("void.example", "permerror"),          # 3 void lookups: past RFC 7208's limit of 2
    ("loop.example", "permerror"), ("chain.example", "permerror"),    # past 10 lookups
    ("broken.example", "permerror"), ("slow.example", "temperror"), ("garbage.example", "temperror"),
])
def test_each_spf_result_is_in_the_header_and_the_mail_is_accepted(server, domain, result):
    srv, _, root = server
    before = len(delivered(root))
    subject = f"spf {domain}"
    assert send(srv, f"carol@{domain}", mail(f"carol@{domain}", subject))[0] == 250
    [m] = [m for m in delivered(root)[before:] if m["Subject"] == subject]
    header = ours(m)
    assert f"spf={result}" in header and f"smtp.mailfrom={domain}" in header, header


def test_the_null_sender_is_checked_by_its_helo_name(server):
    srv, _, root = server
    assert send(srv, "", mail("MAILER-DAEMON@helo.example", "bounce"), helo="helo.example")[0] == 250
    [m] = [m for m in delivered(root) if m["Subject"] == "bounce"]
    assert "spf=pass smtp.helo=helo.example" in ours(m)


def test_the_server_keeps_serving_after_hostile_records(server):
    srv, _, root = server
    for domain in ("chain.example", "loop.example", "garbage.example", "slow.example"):
        assert send(srv, f"x@{domain}", mail(f"x@{domain}", "again " + domain))[0] == 250
    assert send(srv, "carol@pass.example", mail("carol@pass.example", "still here"))[0] == 250
    assert any(m["Subject"] == "still here" for m in delivered(root))


def test_spf_fail_refused_only_when_configured(tmp_path):
    with auth_server(tmp_path, ZONE, **{"mailauth.spf_fail": "reject"}) as (srv, _, root):
        code, text = send(srv, "carol@fail.example", mail("carol@fail.example"))
        assert code == 550 and text.startswith("5.7.23") and "fail.example" in text
        assert send(srv, "carol@soft.example", mail("carol@soft.example"))[0] == 250


def test_no_checks_when_switched_off_or_for_ignored_networks(tmp_path):
    with auth_server(tmp_path, ZONE, **{"mailauth.spf": False, "mailauth.dkim": False,
                                        "mailauth.dmarc": False}) as (srv, _, root):
        assert send(srv, "carol@fail.example", mail("carol@fail.example"))[0] == 250
        assert not any(v.startswith(HOST) for v in auth_results(only(root)))
    with auth_server(tmp_path / "b", ZONE, **{"mailauth.ignore_networks": ["127.0.0.0/8"]}) as (srv, dns, root):
        assert send(srv, "carol@fail.example", mail("carol@fail.example"))[0] == 250
        assert not auth_results(only(root)) and not dns.queries


def test_no_checks_for_authenticated_submission(tmp_path):
    with auth_server(tmp_path, ZONE) as (srv, dns, root):
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20) as s:
            s.starttls(context=__import__("ssl")._create_unverified_context())
            s.login("alice@example.com", "alice-password-1")
            s.sendmail("alice@example.com", [BOB], mail("alice@example.com", "submitted"))
        m = only(root)
        assert m["Subject"] == "submitted" and not auth_results(m) and not dns.queries


def test_a_forged_header_claiming_our_name_is_removed_others_kept(server):
    srv, _, root = server
    forged = (f"Authentication-Results: {HOST}; spf=pass smtp.mailfrom=fail.example\r\n"
              f"Authentication-Results: (comment) {HOST.upper()};\r\n dkim=pass header.d=fail.example\r\n"
              "Authentication-Results: relay.other.example; spf=pass\r\n")
    assert send(srv, "carol@fail.example", mail("carol@fail.example", "forged", extra=forged))[0] == 250
    [m] = [m for m in delivered(root) if m["Subject"] == "forged"]
    results = auth_results(m)
    assert len([v for v in results if v.upper().startswith(HOST.upper()) or HOST.upper() in v.split(";")[0].upper()]) == 1
    assert "spf=fail" in ours(m) and "relay.other.example; spf=pass" in results
    # ours is on top, above our Received line (RFC 8601 §5)
    keys = [k.lower() for k in m.keys()]
    assert keys.index("authentication-results") < keys.index("received")


def test_a_forged_header_is_removed_from_a_large_message_too(server):
    """Past 2 MB the message is held as a LargeMessage (head in memory, rest in a file)."""
    srv, _, root = server
    body = ("x" * 76 + "\r\n") * 40000                   # 3.1 MB
    forged = f"Authentication-Results: {HOST}; dmarc=pass header.from=fail.example\r\n"
    assert send(srv, "carol@pass.example", mail("carol@pass.example", "large forged", body, forged))[0] == 250
    [m] = [m for m in delivered(root) if m["Subject"] == "large forged"]
    assert "dmarc=pass" not in " ".join(auth_results(m)) and "spf=pass" in ours(m)
    assert m.get_payload() == body.replace("\r\n", "\n") or m.get_payload().replace("\r\n", "\n") == body.replace("\r\n", "\n")
