"""DKIM (RFC 6376) and ARC (RFC 8617) on port 25: messages signed by dkimpy with keys
published in the loopback DNS server, sent to a real server; our Authentication-Results
says what each signature and the chain gave."""
from __future__ import annotations

import dkim
import pytest

from helpers_mailauth import Key, auth_server, delivered, mail, ours, send

KEYS = {}


def key(kind: str) -> Key:
    if kind not in KEYS:
        KEYS[kind] = Key(kind) if kind != "rsa1024" else Key("rsa", 1024)
    return KEYS[kind]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with auth_server(tmp_path_factory.mktemp("dkim"), {"x._domainkey.garbage.example": "GARBAGE",
                                                       "s1._domainkey.slow.example": "TIMEOUT"}) as s:
        srv, dns_server, _ = s
        key("rsa").publish(dns_server, "s1", "rsa.example")
        key("ed25519").publish(dns_server, "ed", "ed.example")
        key("rsa").publish(dns_server, "s1", "origin.example")
        key("rsa1024").publish(dns_server, "arc", "lists.example")
        yield s


def received(server, subject):
    _, _, root = server
    [m] = [m for m in delivered(root) if m["Subject"] == subject]
    return m


@pytest.mark.parametrize("kind, domain, selector, canon, length", [
    ("rsa", "rsa.example", "s1", (b"relaxed", b"relaxed"), False),
    ("rsa", "rsa.example", "s1", (b"simple", b"simple"), False),
    ("ed25519", "ed.example", "ed", (b"relaxed", b"simple"), False),
    ("ed25519", "ed.example", "ed", (b"simple", b"relaxed"), False),
    ("rsa", "rsa.example", "s1", (b"relaxed", b"relaxed"), True),        # l= body length
])
def test_a_signed_message_passes(server, kind, domain, selector, canon, length):
    srv = server[0]
    subject = f"signed {kind} {canon[0].decode()}/{canon[1].decode()} l={length}"
    data = key(kind).sign(mail(f"alice@{domain}", subject), selector, domain, canon, length)
    if length:
        data += b"Text added below the signed length still passes (the l= risk).\r\n"
    assert send(srv, f"alice@{domain}", data)[0] == 250
    header = ours(received(server, subject))
    assert f"dkim=pass header.d={domain} header.s={selector}" in header, header


def test_a_message_altered_after_signing_fails(server):
    srv = server[0]
    data = key("rsa").sign(mail("alice@rsa.example", "altered"), "s1", "rsa.example")
    data = data.replace(b"Second line.", b"Second line, changed.")
    assert send(srv, "alice@rsa.example", data)[0] == 250
    assert "dkim=fail (body hash did not verify) header.d=rsa.example" in ours(received(server, "altered"))


def test_two_signatures_each_get_a_result(server):
    srv = server[0]
    data = key("rsa").sign(mail("alice@rsa.example", "two signatures"), "s1", "rsa.example")
    data = key("ed25519").sign(data, "ed", "ed.example")
    assert send(srv, "alice@rsa.example", data)[0] == 250
    header = ours(received(server, "two signatures"))
    assert "dkim=pass header.d=ed.example" in header and "dkim=pass header.d=rsa.example" in header


def test_a_mailing_list_message_with_a_broken_signature_and_a_valid_arc_seal(server):
    srv = server[0]
    original = key("rsa").sign(mail("alice@origin.example", "list post"), "s1", "origin.example")
    # the list checks it, adds its Authentication-Results, changes the subject and adds a footer
    at_list = (b"Authentication-Results: lists.example; dkim=pass header.d=origin.example; arc=none\r\n"
               + original.replace(b"Subject: list post", b"Subject: [list] list post") + b"-- \r\nlist footer\r\n")
    seal = dkim.arc_sign(at_list, b"arc", b"lists.example", key("rsa1024").private, b"lists.example")
    assert send(srv, "list-bounces@lists.example", b"".join(seal) + at_list)[0] == 250
    header = ours(received(server, "[list] list post"))
    assert "dkim=fail (body hash did not verify) header.d=origin.example" in header
    assert "arc=pass (i=1) header.d=lists.example" in header, header
    # a seal over a message changed after sealing is a failed chain
    tampered = b"".join(seal) + at_list.replace(b"list footer", b"changed footer")
    tampered = tampered.replace(b"Subject: [list] list post", b"Subject: [list] tampered")
    assert send(srv, "list-bounces@lists.example", tampered)[0] == 250
    assert "arc=fail" in ours(received(server, "[list] tampered"))


@pytest.mark.parametrize("name, signature, result", [
    ("no key", "v=1; a=rsa-sha256; d=nokey.example; s=s1; h=from; bh=AAAA; b=AAAA", "permerror"),
    ("garbage dns", "v=1; a=rsa-sha256; d=garbage.example; s=x; h=from; bh=AAAA; b=AAAA", "temperror"),
    ("dns timeout", "v=1; a=rsa-sha256; d=slow.example; s=s1; h=from; bh=AAAA; b=AAAA", "temperror"),
    ("malformed", "this is ;; not = a = signature", "permerror"),
    ("no tags", ";;;;", "permerror"),
    ("huge", "v=1; a=rsa-sha256; d=rsa.example; s=s1; h=" + "from:" * 20000 + "from; bh=AAAA; b=" + "A" * 200000,
     "fail"),
    ("unknown algorithm", "v=1; a=rsa-md5; d=rsa.example; s=s1; h=from; bh=AAAA; b=AAAA", "permerror"),
])
def test_hostile_signatures_get_an_error_result_and_the_server_keeps_serving(server, name, signature, result):
    srv = server[0]
    data = f"DKIM-Signature: {signature}\r\n".encode() + mail("alice@rsa.example", f"hostile {name}")
    assert send(srv, "alice@rsa.example", data)[0] == 250
    header = ours(received(server, f"hostile {name}"))
    assert f"dkim={result}" in header, header
    assert "\r" not in header and len(header) < 2000
    ok = key("rsa").sign(mail("alice@rsa.example", f"after {name}"), "s1", "rsa.example")
    assert send(srv, "alice@rsa.example", ok)[0] == 250
    assert "dkim=pass" in ours(received(server, f"after {name}"))


def test_a_message_over_the_size_limit_is_not_verified(tmp_path):
    with auth_server(tmp_path, {}, **{"mailauth.dkim_max_message_mb": 0.01}) as (srv, dns_server, root):
        key("rsa").publish(dns_server, "s1", "rsa.example")
        data = key("rsa").sign(mail("alice@rsa.example", "big", "x" * 70 + "\r\n" * 1) * 1, "s1", "rsa.example")
        data += b"y" * 78 + b"\r\n"
        data = data + (b"z" * 78 + b"\r\n") * 200
        assert send(srv, "alice@rsa.example", data)[0] == 250
        [m] = delivered(root)
        assert "dkim=neutral (message over 0.01 MB, not verified)" in ours(m)


def test_only_arc_fields_in_the_header_make_a_chain_worth_verifying():
    from engine.mailauth.dkimcheck import has_arc_fields
    assert has_arc_fields(b"From: a@b.example\r\nARC-Seal: i=1; a=rsa-sha256;\r\n\tcv=none\r\n\r\nbody\r\n")
    assert has_arc_fields(b"arc-message-signature : i=1\nSubject: x\n\nbody\n")          # LF only, any case
    assert not has_arc_fields(b"From: a@b.example\r\nSubject: ARC-Seal: no\r\n\r\nARC-Seal: i=1\r\n")
    assert not has_arc_fields(b"From: a@b.example\r\nX-ARC-Seal: i=1\r\n\r\n")
