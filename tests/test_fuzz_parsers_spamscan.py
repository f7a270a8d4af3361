"""Property-based tests of what spam scanners answer (engine/scan/rspamd.py, spamd.py):
whatever comes back, the answer is a SpamVerdict whose rule names are fit for a header
(tests= of X-Spam-Status, the log) or ScanFailed, never another exception; a request
never carries a line break from the envelope. How to run a long version: see
tests/test_fuzz_parsers.py."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given, strategies as st

from engine.scan import learn, rspamd, spamd
from engine.scan.verdict import ScanFailed, SpamVerdict
from helpers_fuzz import fuzz

RULE = st.from_regex(r"\A[A-Z][A-Z0-9_]{0,30}\Z")
SCORE = st.floats(min_value=-1000, max_value=1000, allow_nan=False).map(lambda f: round(f, 2))


def fit_for_a_header(names) -> bool:
    return all(0 < len(n) <= 64 and n.isascii() and n.isprintable() and " " not in n and "," not in n
               for n in names)


def checked(parse, raw: bytes) -> SpamVerdict | None:
    try:
        v = parse(raw)
    except ScanFailed as e:
        assert "\n" not in str(e) and "\r" not in str(e)
        return None
    assert isinstance(v, SpamVerdict) and fit_for_a_header(v.symbols)
    assert math.isfinite(v.score) and math.isfinite(v.required)
    return v


@fuzz(500)
@given(st.binary(max_size=400))
@example(b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 15.0 / 5.0\r\n\r\nGTUBE")
@example(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 99\r\nSpam: True ; 15.0 / 5.0\r\n\r\nGTUBE")
@example(b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1e308 / 5.0\r\n\r\n")
@example(b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1.0 / 5.0\r\n\r\nA\r\nBcc: x")
@example(b"SPAMD/1.1 76 EX_PROTOCOL\r\n\r\n")
def test_any_spamd_reply_is_a_verdict_or_scan_failed(raw):
    checked(spamd.parse_reply, raw)


@fuzz(300)
@given(st.sampled_from(["True", "False"]), SCORE, SCORE, st.lists(RULE, max_size=20))
def test_every_well_formed_spamd_reply_is_read_back(spam, score, required, rules):
    body = ",".join(rules).encode()
    raw = (f"SPAMD/1.1 0 EX_OK\r\nContent-length: {len(body)}\r\nSpam: {spam} ; {score} / {required}\r\n\r\n"
           .encode() + body)
    v = checked(spamd.parse_reply, raw)
    assert v is not None and v.score == score and v.required == required
    assert v.spam == (spam == "True") and v.symbols == tuple(rules)


JSON_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                       max_size=4), max_leaves=20)


@fuzz(500)
@given(st.one_of(st.binary(max_size=400), JSON_VALUE.map(lambda v: json.dumps(v).encode()),
                 st.dictionaries(st.sampled_from(["score", "required_score", "action", "symbols"]), JSON_VALUE)
                 .map(lambda v: json.dumps(v).encode())), st.sampled_from([b"200 OK", b"500 Error", b"x"]))
@example(b'{"score": 1e400, "required_score": 15, "action": "reject", "symbols": {}}', b"200 OK")
@example(b'{"score": 1, "required_score": 15, "action": "reject", "symbols": {"A B\\r\\nX": {"score": 1}}}', b"200 OK")
@example(b'[' * 5000, b"200 OK")
def test_any_rspamd_reply_is_a_verdict_or_scan_failed(body, status):
    v = checked(rspamd.parse_reply, b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n\r\n" + body)
    if v is not None:
        assert v.action in rspamd.ACTIONS


@fuzz(300)
@given(st.sampled_from(rspamd.ACTIONS), SCORE, SCORE, st.dictionaries(RULE, SCORE, max_size=20))
def test_every_well_formed_rspamd_reply_is_read_back(action, score, required, symbols):
    body = json.dumps({"score": score, "required_score": required, "action": action,
                       "symbols": {k: {"name": k, "score": s} for k, s in symbols.items()}})
    v = checked(rspamd.parse_reply, b"HTTP/1.1 200 OK\r\n\r\n" + body.encode())
    assert v is not None and (v.score, v.required, v.action) == (score, required, action)
    assert set(v.symbols) == set(symbols)
    assert [symbols[n] for n in v.symbols] == sorted(symbols.values(), reverse=True)     # the heaviest first


@fuzz(300)
@given(st.text(max_size=40), st.text(max_size=40), st.lists(st.text(max_size=40), max_size=3))
@example("192.0.2.1\r\nX-Evil: 1", "helo\nRcpt: root", ["a@b\r\n\r\nGET /"])
def test_a_request_never_carries_a_line_the_envelope_smuggled(helo, sender, rcpts):
    req = rspamd.request(b"BODY", ip="192.0.2.1", helo=helo, sender=sender, rcpts=rcpts)
    head = req[:-len(b"BODY")]
    assert head.endswith(b"\r\n\r\n") and head.count(b"\r\n\r\n") == 1
    assert all(line.split(b":")[0] in (b"Host", b"Connection", b"IP", b"Helo", b"From", b"Rcpt", b"Content-Length")
               for line in head.split(b"\r\n")[1:-2])
    assert b"X: y" not in spamd.request(b"BODY", "bob\r\nX: y")


@pytest.mark.parametrize("raw", [
    b"SPAMD/1.1 0 EX_OK\r\nContent-length: 40\r\nSpam: True ; 15.0 / 5.0\r\n\r\nGTUBE",     # cut short
    b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 15.0 / 5.0\r\n",                                    # no header end
    b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 15.0 / 5.0\r\n\r\nGTUBE,BAD RULE",
    b"HTTP/1.1 200 OK\r\n\r\nnot json",
])
def test_replies_cut_short_or_bent_are_scan_failed(raw):
    parse = rspamd.parse_reply if raw.startswith(b"HTTP") else spamd.parse_reply
    with pytest.raises(ScanFailed):
        parse(raw)


# Learning (engine/scan/learn.py): whatever a learner answers is LEARNED, KNOWN or ScanFailed
# with a one-line reason of printable characters (it reaches the log), never another exception.
@fuzz(500)
@given(st.sampled_from(["rspamd", "spamd"]), st.binary(max_size=400))
@example("rspamd", b"HTTP/1.1 200 OK\r\n\r\n{\"success\":true}")
@example("rspamd", b"HTTP/1.1 208 Already Reported\r\n\r\n")
@example("rspamd", b"HTTP/1.1 500 Oops\r\n\r\n{\"error\": \"\\u0000\\n/etc/shadow\"}")
@example("rspamd", b"HTTP/1.1 200 OK\r\n\r\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[")
@example("spamd", b"SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n")
@example("spamd", b"SPAMD/1.1 69 EX_UNAVAILABLE\r\n\r\n")
def test_a_learner_s_answer_is_learned_known_or_a_clear_failure(learner, raw):
    parse = learn.rspamd_reply if learner == "rspamd" else learn.spamd_reply
    try:
        result = parse(raw)
    except ScanFailed as e:
        assert str(e).isprintable() and len(str(e)) < 300
        return
    assert result in (learn.LEARNED, learn.KNOWN)


def test_the_learners_answers_mean_what_they_say():
    assert learn.rspamd_reply(b"HTTP/1.1 200 OK\r\n\r\n{\"success\":true}") == learn.LEARNED
    assert learn.rspamd_reply(b"HTTP/1.1 208 Already Reported\r\n\r\n{\"error\":\"already learned\"}") == learn.KNOWN
    with pytest.raises(ScanFailed, match="status 200"):
        learn.rspamd_reply(b"HTTP/1.1 200 OK\r\n\r\n{\"success\":false}")
    assert learn.spamd_reply(b"SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n") == learn.LEARNED
    assert learn.spamd_reply(b"SPAMD/1.1 0 EX_OK\r\n\r\n") == learn.KNOWN
    with pytest.raises(ScanFailed, match="error 69"):
        learn.spamd_reply(b"SPAMD/1.1 69 EX_UNAVAILABLE\r\n\r\n")
    # a user name never makes a header line of its own
    assert b"User:" not in learn.spamd_request("spam", b"x", user="bob\r\nSet: remote")
