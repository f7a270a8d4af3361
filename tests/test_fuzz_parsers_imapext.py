"""Property-based tests of the parsers of LIST-EXTENDED / LIST-STATUS arguments, CREATE's
USE parameter, and METADATA's entry names, options and entry-value lists (the parsers
in engine/imap/listargs.py, mailboxes.py, metadatacmd.py and engine/maildir/metadata.py):
each returns a well-formed result or raises its documented error, in linear time; a
stored entry reads back as written. Seeded, like tests/test_fuzz_parsers.py."""
from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

from hypothesis import example, given, strategies as st

from engine.errors import InvalidInput
from engine.imap import listargs, metadatacmd
from engine.imap.listing import Options
from engine.imap.mailboxes import STATUS_ITEMS, create_uses, status_items
from engine.imap.parser import Atom, ParseError, tokenize
from engine.maildir import change_metadata, check_metadata_entry, read_metadata
from helpers_fuzz import fuzz, in_cpu_time

WORDS = ["SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE", "CHILDREN", "STATUS", "RETURN",
         "MESSAGES", "SIZE", "UNSEEN", "BOGUS", "NIL", "USE", "\\Archive", "\\Flagged", "MAXSIZE",
         "DEPTH", "infinity", "0", "1", "7", '""', '"%"', "INBOX", "*", "/private/a", "/shared/b/c"]


@st.composite
def word_soup(draw):
    """Command arguments made of LIST and METADATA words and parentheses, often unbalanced."""
    parts = draw(st.lists(st.sampled_from(WORDS + ["(", ")", "()"]), max_size=14))
    return " ".join(parts).encode()


def _tokens(data: bytes):
    try:
        return tokenize(data)
    except ParseError:
        return None


@fuzz(300)
@given(word_soup())
@example(b'(RECURSIVEMATCH) "" *')
@example(b'"" * RETURN (STATUS (MESSAGES) STATUS (SIZE))')
@example(b'(SUBSCRIBED) "" ("" INBOX) RETURN ()')
def test_list_arguments_parse_or_raise_parse_error(data):
    tokens = _tokens(data)
    if tokens is None:
        return
    try:
        ref, patterns, options = in_cpu_time(1.0, listargs.parse_list, tokens, status_items)
    except ParseError:
        return
    assert isinstance(ref, str) and patterns and all(isinstance(p, str) for p in patterns)
    assert isinstance(options, Options)
    assert not options.recursive or options.subscribed_only or options.special_use_only
    assert options.status_items is None or set(options.status_items) <= set(STATUS_ITEMS)


@fuzz(200)
@given(st.lists(st.sampled_from(sorted(listargs.SELECTION)), max_size=4),
       st.lists(st.sampled_from(["SUBSCRIBED", "CHILDREN", "SPECIAL-USE"]), max_size=3),
       st.lists(st.sampled_from(sorted(STATUS_ITEMS)), max_size=3),
       st.lists(st.text("ab%*/", min_size=1, max_size=5), min_size=1, max_size=3))
def test_grammar_shaped_list_arguments_parse_to_what_they_say(selection, returns, items, patterns):
    args = []
    if selection:
        args.append([Atom(s) for s in selection])
    args += [b"", [p.encode() for p in patterns] if len(patterns) > 1 else patterns[0].encode()]
    ret = [Atom(r) for r in returns] + ([Atom("STATUS"), [Atom(i) for i in items]] if items else [])
    if ret:
        args += [Atom("RETURN"), ret]
    lonely = "RECURSIVEMATCH" in selection and not {"SUBSCRIBED", "SPECIAL-USE"} & set(selection)
    try:
        # every item either protocol knows (RECENT: IMAP4rev1's, DELETED: IMAP4rev2's)
        ref, got, options = listargs.parse_list(args, partial(status_items, known=STATUS_ITEMS))
    except ParseError:
        assert lonely
        return
    assert not lonely
    assert ref == "" and got == patterns
    assert options.subscribed_only == ("SUBSCRIBED" in selection)
    assert options.return_subscribed == ("SUBSCRIBED" in selection or "SUBSCRIBED" in returns)
    assert options.status_items == ([i.upper() for i in items] if items else None)


@fuzz(300)
@given(st.text(max_size=40))
@example("/private/../x")
@example("/shared/./x")
@example("/private/a\x00b")
@example("/PRIVATE/Vendor/X")
@example("/private")
def test_entry_names_are_checked_or_refused(name):
    try:
        key = in_cpu_time(1.0, check_metadata_entry, name)
    except InvalidInput:
        return
    assert key == name.lower()
    assert key.startswith(("/private/", "/shared/"))
    parts = key.split("/")[1:]
    assert all(p not in ("", ".", "..") for p in parts)
    assert not any(c in key for c in "*%\0") and all(ord(c) >= 0x20 and ord(c) != 0x7F for c in key)


@fuzz(200)
@given(word_soup())
def test_metadata_command_arguments_parse_or_raise_parse_error(data):
    tokens = _tokens(data)
    if tokens is None:
        return
    for fn in (metadatacmd.parse_get_options, metadatacmd.parse_changes, create_uses):
        try:
            result = in_cpu_time(1.0, fn, tokens)
        except ParseError:
            continue
        assert result is not None


@fuzz(60)
@given(st.dictionaries(st.text("abcXYZ/-_.", min_size=1, max_size=8).map(lambda s: "/private/v" + s),
                       st.binary(max_size=30), max_size=6))
def test_stored_entries_read_back_as_written(entries):
    valid = {}
    for name, value in entries.items():
        try:
            valid[check_metadata_entry(name)] = value
        except InvalidInput:
            continue
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mailctl-metadata"
        change_metadata(path, list(valid.items()))
        assert read_metadata(path) == valid
        change_metadata(path, [(k, None) for k in valid])
        assert read_metadata(path) == {}
