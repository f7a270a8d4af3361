"""Property-based tests of the SORT, THREAD and ESEARCH parsers (see test_fuzz_parsers.py
for the rules every parser keeps): sort criteria, RETURN options, the RFC 5256 base
subject, msg-id lists, and thread building over any reference graph."""
from __future__ import annotations

from hypothesis import given, strategies as st

from engine.imap import searchreturn, sort, thread
from engine.imap.basesubject import base_subject, decode_words
from engine.imap.parser import Atom, ParseError
from helpers_fuzz import fuzz, in_cpu_time

WORDS = ["REVERSE", "DATE", "ARRIVAL", "SUBJECT", "FROM", "TO", "CC", "SIZE", "DISPLAYFROM",
         "DISPLAYTO", "BOGUS", "reverse", "date", ""]
token = st.one_of(st.sampled_from(WORDS).map(Atom), st.binary(max_size=5),
                  st.lists(st.sampled_from(WORDS).map(Atom), max_size=3))


@fuzz(300)
@given(st.one_of(st.lists(token, max_size=40), token))
def test_sort_criteria_parse_or_raise_parse_error(tokens):
    try:
        criteria = in_cpu_time(1.0, sort.parse_criteria, tokens)
    except ParseError:
        return
    assert criteria and len(criteria) <= sort.MAX_KEYS
    assert all(key in sort.KEYS and isinstance(rev, bool) for key, rev in criteria)


RETURN_WORDS = ["MIN", "MAX", "ALL", "COUNT", "SAVE", "PARTIAL", "1:5", "5:1", "0:3", "x", "1:2:3",
                "99999999999:1", "min"]


@fuzz(300)
@given(st.one_of(st.lists(st.one_of(st.sampled_from(RETURN_WORDS).map(Atom), st.binary(max_size=3)),
                          max_size=12), st.sampled_from(RETURN_WORDS).map(Atom)),
       st.lists(st.integers(1, 50), max_size=30, unique=True), st.booleans())
def test_return_options_parse_or_raise_and_format(tokens, numbers, ordered):
    try:
        opts = in_cpu_time(1.0, searchreturn.parse_return, tokens)
    except ParseError:
        return
    line = searchreturn.esearch_line("a1", False, opts, numbers, ordered)
    assert line.startswith(b'* ESEARCH (TAG "a1")') and line.endswith(b"\r\n")
    assert b"\r\n" not in line[:-2]
    if opts.count:
        assert f" COUNT {len(numbers)}".encode() in line
    saved = searchreturn.saved_numbers(opts, numbers, ordered)
    assert set(saved) <= set(numbers)


@fuzz(200)
@given(st.lists(st.integers(1, 10 ** 6), max_size=60, unique=True))
def test_sequence_set_round_trips(numbers):
    from engine.imap.parser import parse_sequence_set
    text = searchreturn.sequence_set(numbers)
    got = set()
    for a, b in (parse_sequence_set(text) if text else []):
        got.update(range(a, b + 1))
    assert got == set(numbers)


SUBJECT_PARTS = ["Re:", "RE: ", "re", "Fwd:", "FW:", "fw", "[list]", "[", "]", "[Fwd: ", "(fwd)", " ", "\t",
                 "\r\n ", "=?UTF-8?B?w6k=?=", "=?utf-8?q?Caf=C3=A9_x?=", "=?x?q?broken", "=?", "?=", "a",
                 "Zeta", "é", "ß", "\x00", "(FWD)", ":"]


@fuzz(500)
@given(st.lists(st.sampled_from(SUBJECT_PARTS), max_size=30), st.binary(max_size=40))
def test_base_subject_is_total_and_idempotent(parts, raw):
    for value in ("".join(parts).encode(), raw):
        base, reply = in_cpu_time(1.0, base_subject, value)
        assert isinstance(base, str) and isinstance(reply, bool)
        assert base == base.strip(" ") or base.startswith("[")    # leaders and trailers gone
        again, _ = base_subject(base)
        assert again == base or base.startswith("[")               # no second layer left
    assert isinstance(decode_words("".join(parts)), str)


def test_base_subject_examples():
    assert base_subject(b"Re: [list] Fwd: Hello (fwd)") == ("HELLO", True)
    assert base_subject(b"[Fwd: re: alpha]") == ("ALPHA", True)
    assert base_subject(b"[only a blob]") == ("[ONLY A BLOB]", False)
    assert base_subject(b"=?UTF-8?Q?Re=3A_Caf=C3=A9?=")[0] == base_subject("Café".encode())[0]
    assert base_subject(None) == ("", False)


@fuzz(300)
@given(st.binary(max_size=80))
def test_message_ids_are_bracketed_ids(value):
    for mid in in_cpu_time(1.0, thread.message_ids, value):
        assert b"@" in mid and b"<" not in mid and b">" not in mid


IDS = [f"<{i}@x>".encode() for i in range(8)]


@st.composite
def thread_msgs(draw):
    n = draw(st.integers(0, 25))
    out = []
    for i in range(n):
        msgid = draw(st.one_of(st.none(), st.sampled_from(IDS)))
        refs = draw(st.lists(st.sampled_from(IDS), max_size=5))
        subject = draw(st.one_of(st.none(), st.sampled_from([b"a", b"Re: a", b"b", b"", b"Fwd: b"])))
        out.append(thread.ThreadMsg(i + 1, i + 1, msgid and msgid[1:-1], [r[1:-1] for r in refs],
                                    subject, float(draw(st.integers(0, 3)))))
    return out


@fuzz(400)
@given(thread_msgs(), st.booleans())
def test_threads_hold_every_message_once(msgs, ordered):
    roots = in_cpu_time(1.0, thread.ordered_subject if ordered else thread.references, msgs)
    text = thread.encode(roots)
    numbers = [int(x) for x in text.replace("(", " ").replace(")", " ").split()]
    assert sorted(numbers) == [m.number for m in msgs]
    assert text.count("(") == text.count(")")
    assert "()" not in text


def test_a_reply_chain_thousands_deep_threads_in_linear_time():
    n = 20_000
    msgs = [thread.ThreadMsg(i, i, f"{i}@x".encode(), [f"{i - 1}@x".encode()] if i > 1 else [],
                             b"x", float(i)) for i in range(1, n + 1)]
    text = in_cpu_time(5.0, lambda: thread.encode(thread.references(msgs)))
    assert text == "(" + " ".join(str(i) for i in range(1, n + 1)) + ")"
    # a comb: every message the parent of a leaf and of the next, nested n/2 deep
    comb = [thread.ThreadMsg(i, i, f"{i}@x".encode(), [f"{(i - 1) // 2 * 2 - 1}@x".encode()] if i > 1 else [],
                             b"x", float(i)) for i in range(1, 4001)]
    assert thread.encode(thread.references(comb)).count("(") > 1000
