"""Property-based tests of the ACL parsers (engine/acl/): a dovecot-acl file of any text
(hand edits, junk, binary) never raises, keeps every good line and drops the rest; what it
writes reads back the same; a rights string from the network is either refused or a set
of known letters; an identifier is never written in a form that splits a line. How to run
a long version: see tests/test_fuzz_parsers.py."""
from __future__ import annotations

import pytest
from hypothesis import example, given, strategies as st

from engine.acl import aclfile, rights
from engine.errors import InvalidInput
from helpers_fuzz import fuzz

IDENTS = st.sampled_from(["owner", "anyone", "anonymous", "authenticated", "user=b@example.com",
                          "-user=b@example.com", "group=staff", "group-override=off", "user=", "=x",
                          "user=a b", "junk", "-", "user=x\x00y", "#c"])
LETTERS = st.text(alphabet="lrswipkxteacdzZ:# \t\x00\xff", max_size=14)
LINES = st.one_of(st.tuples(IDENTS, LETTERS).map(lambda t: f"{t[0]} {t[1]}"), st.text(max_size=40))


@fuzz(500)
@given(st.lists(LINES, max_size=12))
@example(["user=b@example.com lr", "garbage", "user= lr", "user=b@example.com lrz", "\x00\xff", "owner"])
def test_any_file_text_parses_and_its_entries_read_back(lines):
    text = "\n".join(lines)
    entries, problems = aclfile.parse(text)
    kept_lines = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(entries) + len(problems) == len(kept_lines)
    for e in entries:
        assert e.rights <= rights.ALL
    again, none = aclfile.parse(aclfile.format_entries(entries))
    assert again == entries and none == []
    for user in ("b@example.com", "c@example.com"):
        for owner in (True, False):
            assert aclfile.rights_for(entries, user, owner) <= rights.ALL


@fuzz(500)
@given(st.text(max_size=80))
@example("lrswipkxtea")
@example("cd")
@example("l" * 65)
def test_a_rights_string_is_known_letters_or_refused(text):
    try:
        got = rights.parse(text)
    except InvalidInput:
        assert len(text) > rights.MAX_RIGHTS_TEXT or set(text) - set(rights.LETTERS) - set("cd")
        return
    assert got <= rights.ALL
    shown = rights.imap_text(got)
    assert shown.startswith(rights.letters(got)) and rights.parse(rights.letters(got)) == got
    assert set(shown[len(rights.letters(got)):]) <= set("cd")   # c, d only added for old clients


@fuzz(500)
@given(st.text(max_size=60))
@example("b@example.com lrswipkxtea\nanyone")
@example("x=y")
def test_an_identifier_is_refused_or_stays_one_field_of_one_line(name):
    try:
        entry = aclfile.parse_identifier("user=" + name)
    except InvalidInput:
        return
    line = aclfile.Entry(entry.kind, entry.name, rights.parse("lr")).line()
    assert "\n" not in line and "\r" not in line and len(line.split(" ")) == 2
    assert aclfile.parse(line) == ([aclfile.Entry(entry.kind, entry.name, rights.parse("lr"))], [])


@pytest.mark.parametrize("text, expected", [
    ("c", "kx"), ("d", "et"), ("lrcd", "lrekxt"), ("", ""),
])
def test_obsolete_rights_map_as_dovecot_maps_them(text, expected):
    assert rights.parse(text) == frozenset(expected)
