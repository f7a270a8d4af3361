"""Our DKIM verifier (engine/mailauth/dkimverify.py) against dkimpy's own `DKIM.verify`,
the library it replaces on the hot path: generated messages (folded and odd whitespace,
trailing blank lines, LF or CRLF line ends, repeated fields) signed by dkimpy with every
canonicalization, RSA and ed25519, with and without l=, then left alone or damaged in one
way (body, header, signature, key). Both must give the same verdict: pass, fail (False) or
an error. Any exception from dkimpy was a permerror in dkimcheck; ours raises only
dkim.DKIMException, anything else is a finding.

How to run a long version: MAILCTL_FUZZ_EXAMPLES=20000 (see tests/test_fuzz_parsers.py).
"""
from __future__ import annotations

import base64

import dkim
import pytest
from hypothesis import assume, example, given, strategies as st

from engine.mailauth import dkimverify
from helpers_fuzz import fuzz
from helpers_mailauth import Key

DOMAIN, SELECTOR = b"signer.example", b"sel"
KEYS = {"rsa": Key("rsa"), "ed25519": Key("ed25519"), "rsa1024": Key("rsa", 1024)}

WSP = st.sampled_from([" ", "\t", "  ", " \t ", "\r\n ", "\r\n\t", ""])
WORD = st.sampled_from(["News", "<a@signer.example>", "x", "Hello", "=?utf-8?q?h=C3=A9?=", "b=", "a:b", ";", "é"])
FIELD = st.sampled_from(["From", "To", "Subject", "Date", "Message-ID", "Received", "X-Tag", "subject", "FROM"])
LINE = st.lists(st.sampled_from(["text", " ", "\t", "  x  ", "http://a.example/", "=3D", ".", "é", ""]), max_size=6)
CANON = st.sampled_from([b"simple", b"relaxed"])
DAMAGE = st.sampled_from(["none", "body_char", "body_append", "body_trailing_space", "body_blank_lines",
                          "header_added", "from_added", "header_case", "header_space", "sig_refolded",
                          "b_truncated", "b_changed", "no_key", "other_key", "lf_line_ends", "l_changed",
                          "revoked_key", "h_without_from"])


def value(words: list[str], spaces: list[str]) -> str:
    return "".join(w + s for w, s in zip(words, spaces + [""] * len(words)))


@st.composite
def messages(draw) -> bytes:
    fields = [("From", value(draw(st.lists(WORD, min_size=1, max_size=4)), draw(st.lists(WSP, max_size=4))))]
    for _ in range(draw(st.integers(0, 5))):
        fields.append((draw(FIELD), value(draw(st.lists(WORD, max_size=4)), draw(st.lists(WSP, max_size=4)))))
    draw(st.randoms()).shuffle(fields)
    head = "".join(f"{name}:{' ' if draw(st.booleans()) else ''}{v}\r\n" for name, v in fields)
    lines = ["".join(parts) for parts in draw(st.lists(LINE, max_size=8))]
    body = "\r\n".join(lines) + ("\r\n" if draw(st.booleans()) else "") + "\r\n" * draw(st.integers(0, 3))
    return (head + "\r\n" + body).encode()


def dkimpy_verdict(message: bytes, dnsfunc) -> str:
    try:
        return "pass" if dkim.DKIM(message, minkey=1024).verify(0, dnsfunc=dnsfunc) else "fail"
    except Exception as e:  # noqa: BLE001 - dkimcheck made any of them a permerror
        return _error(e)


def our_verdict(message: bytes, dnsfunc) -> str:
    parsed = dkimverify.parse(message)
    sigs = parsed.signatures()
    if not sigs:
        return "fail"
    try:
        return "pass" if dkimverify.verify(parsed, sigs[0], dnsfunc, 1024) else "fail"
    except dkim.DKIMException as e:
        return _error(e)


def _error(e: Exception) -> str:
    """As dkimcheck tells them apart: a body hash mismatch is a fail, the rest permerror."""
    return "body hash" if str(e).startswith("body hash mismatch") else "error"


def damaged(message: bytes, how: str, rnd) -> bytes:
    head, _, body = message.partition(b"\r\n\r\n")
    if how == "body_char" and body.strip():
        i = rnd.choice([i for i, c in enumerate(body) if c not in b"\r\n \t"])
        body = body[:i] + (b"Y" if body[i:i + 1] != b"Y" else b"Z") + body[i + 1:]
    elif how == "body_append":
        body += b"-- \r\nadded by a list\r\n"
    elif how == "body_trailing_space":
        body = body.replace(b"\r\n", b" \r\n", 1) if b"\r\n" in body else body + b" "
    elif how == "body_blank_lines":
        body += b"\r\n\r\n"
    elif how == "header_added":
        head += b"\r\nSubject: added"
    elif how == "from_added":
        head += b"\r\nFrom: other@evil.example"
    elif how == "header_case":
        head = head.replace(b"\r\nFrom:", b"\r\nfROM:")
    elif how == "header_space":
        head = head.replace(b"\r\nFrom:", b"\r\nFrom:  \t")
    elif how == "sig_refolded":
        head = head.replace(b"; ", b";\r\n\t", 2)
    elif how in ("b_truncated", "b_changed", "l_changed", "h_without_from"):
        sig_end = head.index(b"\r\n", head.index(b" b=")) if b" b=" in head else len(head)
        if how == "b_truncated":
            head = head[:sig_end - 4] + head[sig_end:]
        elif how == "b_changed":
            i = sig_end - 6
            head = head[:i] + (b"A" if head[i:i + 1] != b"A" else b"B") + head[i + 1:]
        elif how == "l_changed":
            head = head.replace(b" l=", b" l=1", 1)
        else:
            head = head.replace(b"h=from : ", b"h=", 1).replace(b"h=from", b"h=to", 1)
    elif how == "lf_line_ends":
        return (head + b"\r\n\r\n" + body).replace(b"\r\n", b"\n")
    return head + b"\r\n\r\n" + body


def dns_for(key: Key, how: str):
    records = {"no_key": None, "other_key": KEYS["ed25519" if key.kind == "rsa" else "rsa"].record,
               "revoked_key": "v=DKIM1; p="}

    def dnsfunc(name, timeout=5):
        if name != SELECTOR + b"._domainkey." + DOMAIN + b".":
            return None
        record = records.get(how, key.record)
        return record.encode() if record is not None else None
    return dnsfunc


@fuzz(400)
@given(messages(), st.sampled_from(sorted(KEYS)), CANON, CANON, st.booleans(), DAMAGE, st.randoms(),
       st.lists(st.sampled_from([b"to", b"subject", b"date", b"message-id", b"received", b"x-tag", b"cc"]),
                max_size=4))
@example(b"From: a@signer.example\r\n\r\nbody\r\n", "rsa", b"relaxed", b"simple", False, "none", None, [])
@example(b"From: a@signer.example\r\nSubject: x\r\n\r\n", "ed25519", b"simple", b"relaxed", True, "from_added",
         None, [b"subject"])
def test_our_verdict_is_dkimpys(message, key_name, hcanon, bcanon, length, how, rnd, extra):
    import random
    rnd = rnd or random.Random(0)
    key = KEYS[key_name]
    try:
        sig = dkim.sign(message, SELECTOR, DOMAIN, key.private, canonicalize=(hcanon, bcanon),
                        signature_algorithm=key.algorithm, length=length, include_headers=[b"from", *extra])
    except dkim.DKIMException:
        assume(False)
    signed = damaged(sig + message, how, rnd)
    dnsfunc = dns_for(key, how)
    ours, theirs = our_verdict(signed, dnsfunc), dkimpy_verdict(signed, dnsfunc)
    assert ours == theirs, (how, signed)
    froms = [f for f in dkimverify.parse(message).headers if f[0].lower() == b"from"]
    if how == "none" and len(froms) == 1:         # two From fields, one signed: a fail (by design)
        assert ours == "pass"


@pytest.mark.parametrize("how", ["body_char", "from_added", "b_changed", "no_key", "other_key", "lf_line_ends"])
def test_each_damage_is_told_apart_from_an_intact_signature(how):
    """The generator's damages do what their names say (for the relaxed/relaxed RSA case)."""
    message = b"From: News <a@signer.example>\r\nSubject: hello\r\n\r\nline one\r\nline two\r\n"
    key = KEYS["rsa"]
    signed = key.sign(message, SELECTOR.decode(), DOMAIN.decode())
    import random
    verdict = our_verdict(damaged(signed, how, random.Random(1)), dns_for(key, how))
    expected = {"lf_line_ends": "pass", "body_char": "body hash", "no_key": "fail", "other_key": "error"}
    assert verdict == expected.get(how, "fail"), how


def test_a_short_rsa_key_is_an_error_even_with_a_good_signature():
    key = KEYS["rsa1024"]
    message = key.sign(b"From: a@signer.example\r\n\r\nx\r\n", SELECTOR.decode(), DOMAIN.decode())
    assert our_verdict(message, dns_for(key, "none")) == "pass"         # 1024 bits: the least allowed
    with pytest.raises(dkim.KeyFormatError):
        dkimverify.verify(dkimverify.parse(message), dkimverify.parse(message).signatures()[0],
                          dns_for(key, "none"), 2048)


def test_a_hostile_key_record_is_no_pass_and_no_crash():
    message = KEYS["rsa"].sign(b"From: a@signer.example\r\n\r\nx\r\n", SELECTOR.decode(), DOMAIN.decode())
    huge = base64.b64encode(b"\x30\x82\xff\xff" + b"\xff" * 65535).decode()
    for record in ("v=DKIM1; k=rsa; p=" + huge, "v=DKIM1; k=rsa; p=!!!", "v=DKIM1; k=dsa; p=AAAA", "k=ed25519; p=AA"):
        verdict = our_verdict(message, lambda name, timeout=5, r=record: r.encode())
        assert verdict in ("fail", "error"), record
