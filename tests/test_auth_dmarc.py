"""DMARC on port 25 (RFC 7489): the From domain's policy when neither SPF nor DKIM passes
aligned with it, against records in the loopback DNS server; the client is 127.0.0.1."""
from __future__ import annotations

import pytest

from helpers_mailauth import Key, auth_server, delivered, mail, ours, send

OUTSIDE = "v=spf1 ip4:192.0.2.0/24 -all"          # SPF that does not cover 127.0.0.1
INSIDE = "v=spf1 ip4:127.0.0.1 -all"
ZONE = {
    "reject.example": {"TXT": [OUTSIDE]},
    "_dmarc.reject.example": {"TXT": ["v=DMARC1; p=reject; rua=mailto:d@reject.example"]},
    "quar.example": {"TXT": [OUTSIDE]},
    "_dmarc.quar.example": {"TXT": ["v=DMARC1; p=quarantine"]},
    "mon.example": {"TXT": [OUTSIDE]},
    "_dmarc.mon.example": {"TXT": ["v=DMARC1; p=none"]},
    "good.example": {"TXT": [INSIDE]},
    "_dmarc.good.example": {"TXT": ["v=DMARC1; p=reject; aspf=r"]},
    "strict.example": {"TXT": [OUTSIDE]},
    "_dmarc.strict.example": {"TXT": ["v=DMARC1; p=reject; aspf=s"]},
    "bounce.strict.example": {"TXT": [INSIDE]},
    "_dmarc.sp.example": {"TXT": ["v=DMARC1; p=none; sp=reject"]},
    "_dmarc.spnone.example": {"TXT": ["v=DMARC1; p=reject; sp=none"]},
    "_dmarc.pct.example": {"TXT": ["v=DMARC1; p=reject; pct=0"]},
    "_dmarc.example.co.uk": {"TXT": ["v=DMARC1; p=reject"]},
    "_dmarc.two.example": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]},
    "_dmarc.bad.example": {"TXT": ["v=DMARC1; p=bogus"]},
    "_dmarc.slow.example": "TIMEOUT",
    "slow.example": "TIMEOUT",
    "_dmarc.sub.slowdkim.example": {"TXT": ["v=DMARC1; p=reject"]},
    "s1._domainkey.slowdkim.example": "TIMEOUT",
}


@pytest.fixture(scope="module")
def keys():
    return Key("rsa")


@pytest.fixture(scope="module")
def server(tmp_path_factory, keys):
    with auth_server(tmp_path_factory.mktemp("dmarc"), ZONE) as s:
        keys.publish(s[1], "s1", "reject.example")
        yield s


def got(server, subject, folder="INBOX"):
    [m] = [m for m in delivered(server[2], folder) if m["Subject"] == subject]
    return m


def test_a_forged_from_of_a_reject_domain_is_refused_naming_the_domain(server):
    srv = server[0]
    for sender in ("ceo@reject.example", "attacker@elsewhere.example"):
        code, text = send(srv, sender, mail("CEO <ceo@reject.example>", "forged " + sender))
        assert code == 550 and text.startswith("5.7.1") and "reject.example" in text, text
    assert not [m for m in delivered(server[2]) if m["Subject"].startswith("forged")]


def test_an_aligned_dkim_pass_is_accepted_when_spf_fails(server, keys):
    """A forwarded message: the forwarder's IP is outside the SPF record, the signature holds."""
    srv = server[0]
    data = keys.sign(mail("ceo@reject.example", "forwarded"), "s1", "reject.example")
    assert send(srv, "ceo@reject.example", data)[0] == 250
    header = ours(got(server, "forwarded"))
    assert "spf=fail" in header and "dkim=pass header.d=reject.example" in header
    assert "dmarc=pass (p=reject dis=NONE) header.from=reject.example" in header


def test_an_aligned_spf_pass_is_accepted(server):
    srv = server[0]
    assert send(srv, "news@good.example", mail("news@good.example", "spf aligned"))[0] == 250
    assert "dmarc=pass" in ours(got(server, "spf aligned"))


def test_strict_spf_alignment_needs_the_same_domain(server):
    srv = server[0]
    code, text = send(srv, "bounces@bounce.strict.example", mail("news@strict.example", "strict"))
    assert code == 550 and "strict.example" in text


def test_quarantine_files_into_junk_and_none_only_reports(server):
    srv = server[0]
    assert send(srv, "x@quar.example", mail("x@quar.example", "quarantined"))[0] == 250
    assert "dmarc=fail (p=quarantine dis=QUARANTINE)" in ours(got(server, "quarantined", "Junk"))
    assert send(srv, "x@mon.example", mail("x@mon.example", "monitored"))[0] == 250
    assert "dmarc=fail (p=none dis=NONE) header.from=mon.example" in ours(got(server, "monitored"))


def test_subdomain_policy_and_organisational_domain(server):
    srv = server[0]
    code, text = send(srv, "x@a.sp.example", mail("x@a.sp.example", "sp reject"))
    assert code == 550 and "a.sp.example" in text
    assert send(srv, "x@sp.example", mail("x@sp.example", "p none"))[0] == 250
    assert send(srv, "x@a.spnone.example", mail("x@a.spnone.example", "sp none"))[0] == 250
    # the organisational domain from the Public Suffix List: example.co.uk, not co.uk
    code, text = send(srv, "x@mail.example.co.uk", mail("x@mail.example.co.uk", "psl"))
    assert code == 550 and "mail.example.co.uk" in text


def test_pct_zero_applies_the_next_weaker_policy(server):
    srv = server[0]
    assert send(srv, "x@pct.example", mail("x@pct.example", "pct"))[0] == 250
    assert "dmarc=fail (p=reject dis=QUARANTINE)" in ours(got(server, "pct", "Junk"))


def test_unusable_records_are_not_enforced(server):
    srv = server[0]
    for domain in ("two.example", "bad.example"):
        assert send(srv, f"x@{domain}", mail(f"x@{domain}", "unusable " + domain))[0] == 250
        assert "dmarc=permerror" in ours(got(server, "unusable " + domain))


def test_a_dns_timeout_is_at_most_a_451(server):
    srv = server[0]
    code, text = send(srv, "x@slow.example", mail("x@slow.example", "slow"))
    assert code == 451 and text.startswith("4.4.3") and "slow.example" in text
    # an unverifiable signature of a p=reject domain: it might have passed, so not a 5xx
    data = ("DKIM-Signature: v=1; a=rsa-sha256; d=slowdkim.example; s=s1; h=from; bh=AAAA; b=AAAA\r\n".encode()
            + mail("x@sub.slowdkim.example", "dkim timeout"))
    code, text = send(srv, "x@elsewhere.example", data)
    assert code == 451, text


def test_temperror_accepted_when_not_deferring_and_admin_overrides(tmp_path):
    with auth_server(tmp_path, ZONE, **{"mailauth.defer_on_temperror": False,
                                        "mailauth.dmarc_reject": "quarantine"}) as (srv, _, root):
        assert send(srv, "x@slow.example", mail("x@slow.example", "slow"))[0] == 250
        [m] = delivered(root)
        assert "dmarc=temperror" in ours(m) and "spf=temperror" in ours(m)
        assert send(srv, "ceo@reject.example", mail("ceo@reject.example", "forged"))[0] == 250
        [m] = delivered(root, "Junk")
        assert "dmarc=fail (p=reject dis=REJECT)" in ours(m)


def test_slow_dns_holds_a_message_no_longer_than_the_time_limit(tmp_path):
    """Eight signatures whose keys never answer, an SPF and a DMARC zone that never
    answers: without mailauth.time_limit_s that is over 10 s of a worker thread."""
    import time
    zone = {"slow.example": "TIMEOUT", "_dmarc.slow.example": "TIMEOUT",
            **{f"s{n}._domainkey.slow.example": "TIMEOUT" for n in range(8)}}
    with auth_server(tmp_path, zone, **{"mailauth.dns_timeout_s": 1, "mailauth.time_limit_s": 2}) as (srv, _, _r):
        sigs = "".join(f"DKIM-Signature: v=1; a=rsa-sha256; d=slow.example; s=s{n}; h=from; bh=AAAA; b=AAAA\r\n"
                       for n in range(8)).encode()
        started = time.monotonic()
        code, text = send(srv, "x@slow.example", sigs + mail("x@slow.example", "slow signatures"))
        assert code == 451 and time.monotonic() - started < 6, (code, text, time.monotonic() - started)
