"""Property-based tests of the Sieve parser and interpreter (engine/sieve/): any text
either compiles or raises SieveError with a line number (never another exception), in
bounded time; a compiled script run on a message ends with a Result (an error or a limit
gives INBOX), never an exception; :matches agrees with fnmatch and runs in linear time.
How to run a long version: see tests/test_fuzz_parsers.py."""
from __future__ import annotations

import fnmatch
import re

from hypothesis import example, given, strategies as st

from engine.sieve.interp import Script
from engine.sieve.lexer import SieveError
from engine.sieve.match import Budget, wildcard
from engine.sieve.message import SieveMessage
from helpers_fuzz import fuzz, in_cpu_time

WORDS = ["require", "if", "elsif", "else", "stop", "keep", "discard", "fileinto", "redirect",
         "header", "address", "envelope", "exists", "size", "allof", "anyof", "not", "true",
         "false", ":is", ":contains", ":matches", ":regex", ":over", ":under", ":comparator",
         ":copy", ":flags", ":value", ":count", "setflag", "set", "string", "body", "reject",
         '"fileinto"', '"subject"', '"a*b"', '"${1}"', '"x@example.com"', '"i;octet"', '"gt"',
         '"variables"', '"regex"', '"copy"', '"imap4flags"', '"relational"', "10K", "1",
         "{", "}", "(", ")", "[", "]", ",", ";", "text:\n.\n", "#c\n", "/* c */", '"', "\n"]
SCRIPTY = st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join)
MESSAGE = b"From: a@example.com\r\nTo: b+x@example.org\r\nSubject: a b c\r\n\r\nbody\r\n"


def compile_or_refuse(text: str):
    try:
        return in_cpu_time(2.0, Script, text)
    except SieveError as e:
        assert re.match(r"(line \d+: )?\S", str(e)), str(e)
        return None


@fuzz(600)
@given(SCRIPTY)
@example('require ["fileinto"]; if header :contains "subject" "a" { fileinto "X"; }')
@example("if " * 40 + "true")
@example('text:\n..\n.\n')
def test_a_script_compiles_or_is_refused_and_runs_to_a_result(text):
    script = compile_or_refuse(text)
    if script is not None:
        result = in_cpu_time(2.0, script.run, SieveMessage(MESSAGE, "a@example.com", "b+x@example.org"))
        assert result.implicit_keep or result.actions


@fuzz(400)
@given(st.text(max_size=200))
def test_any_text_is_refused_with_a_sieve_error_or_compiles(text):
    compile_or_refuse(text)


@fuzz(400)
@given(st.text(alphabet="ab*?", max_size=12), st.text(alphabet="ab", max_size=20))
def test_matches_agrees_with_fnmatch(key, value):
    ours = wildcard(value, key, "i;octet", Budget(10**9))
    expected = fnmatch.fnmatchcase(value, key.replace("[", "[[]"))
    assert (ours is not None) == expected
    if ours is not None:
        assert len(ours) == 1 + key.count("*") + key.count("?")


def test_matches_with_many_stars_is_linear():
    key, value = "*a" * 30 + "*b", "a" * 5000
    assert in_cpu_time(1.0, wildcard, value, key, "i;octet", Budget(10**9)) is None


# enotify's mailto URIs (engine/sieve/mailto.py): a parsed URI or SieveError, never another
# exception; every recipient it gives is one plain address.
@fuzz(400)
@given(st.text(alphabet="mailto:@.,?&=%20abcXYZ-_+<>\"\\ \r\n\x00é", max_size=80))
@example("mailto:a@example.net,b@example.net?cc=c@example.net&subject=%41&body=x")
@example("mailto:?to=%00@x")
def test_a_mailto_uri_parses_or_is_refused(uri):
    from engine.sieve import mailto
    try:
        found = mailto.parse(uri)
    except SieveError:
        return
    for address in found.to + found.cc:
        assert "@" in address and not any(c in address for c in " \r\n\0<>,\"")


# editheader (engine/sieve/editheader.py) on any message: the body is never touched, an
# added field is found again, a deleted one is gone (but Received never goes).
@fuzz(300)
@given(st.binary(max_size=300), st.sampled_from(["X-A", "Subject", "Received", "x-a"]), st.text(max_size=40))
@example(b"Subject: a\r\n b\r\nReceived: x\r\n\r\nbody", "Received", "v")
def test_header_edits_keep_the_body(raw, name, value):
    from engine.sieve import editheader
    eol = b"\r\n" if b"\r\n" in raw[:4096] else b"\n"
    body = raw[raw.find(eol + eol) + 2 * len(eol):] if eol + eol in raw else b""
    added = editheader.add(raw, name, value)
    assert added.endswith(body)
    fields, _, _ = editheader._split(added)
    assert any(editheader._name(f) == name.lower() for f in fields)
    gone = editheader.delete(added, name, lambda v: False)
    assert gone.endswith(body)
    left = [editheader._name(f) for f in editheader._split(gone)[0]]
    assert (name.lower() in left) == (name.lower() == "received")
