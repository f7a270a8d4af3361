"""Property-based tests of every parser of the engine (issue 19): each either returns a
well-formed result or raises its documented error, never another exception, never
takes more than linear time, and round trips hold where there is one.

This file: the IMAP command parsers (tokenizer, numbers and sequence sets, SEARCH keys,
FETCH items, APPEND dates, LIST patterns) and folder names (modified UTF-7, the
folder-name rule of engine/foldernames.py and the Maildir calls that use it).
test_fuzz_parsers_mime.py: MIME and BODYSTRUCTURE. test_fuzz_parsers_mail.py: SMTP,
POP3, addresses, charsets, TOML configuration and injected mail.

Every property is seeded (the same examples on every run, CI included). A long run:

    MAILCTL_FUZZ_EXAMPLES=100000 python3 -m pytest -q -p no:cacheprovider tests/test_fuzz_parsers*.py

gives every property that many examples. An input that once failed is kept as an
@example on its property.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, strategies as st

from engine import foldernames, mutf7
from engine.errors import InvalidInput
from engine.imap import fetch, search
from engine.imap.addrlist import address_list
from engine.imap.index import encode_envelope
from engine.imap.listing import Pattern
from engine.imap.parser import (MAX_DEPTH, Atom, Literal8, ParseError, SequenceMatcher, number,
                                parse_sequence_set, tokenize)
from engine.maildir import Maildir
from helpers_fuzz import fuzz, in_cpu_time

# -- the tokenizer ---------------------------------------------------------------------

ATOM_CHARS = "abcXYZ019!#$&'+,-./:;<=>?@^_`|*%\\"


def atoms():
    return st.text(ATOM_CHARS, min_size=1, max_size=12).map(Atom)


def quoted_strings():
    return st.binary(max_size=30).map(lambda b: bytes(c for c in b if c not in b"\r\n\0"))


@st.composite
def literals(draw):
    return ("literal8" if draw(st.booleans()) else "literal", draw(st.binary(max_size=40)))


def token_trees():
    leaf = st.one_of(atoms(), quoted_strings(), literals())
    return st.recursive(leaf, lambda inner: st.lists(inner, max_size=5), max_leaves=30)


def wire(token) -> bytes:
    """A token as a client writes it."""
    if isinstance(token, Atom):
        return token.encode("ascii")
    if isinstance(token, bytes):
        return b'"' + token.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    if isinstance(token, tuple):
        kind, data = token
        return (b"~" if kind == "literal8" else b"") + b"{%d}\r\n" % len(data) + data
    return b"(" + b" ".join(wire(t) for t in token) + b")"


def parsed(token):
    """What tokenize gives for a token."""
    if isinstance(token, tuple):
        return token[1]
    if isinstance(token, list):
        return [parsed(t) for t in token]
    return token


@fuzz(150)
@given(st.binary(max_size=300))
@example(b"A1 FETCH 1 BODY[HEADER.FIELDS (To)]<0.10>")
@example(b"a {99999999999999999999999}\r\n")
@example(b"~{3+}\r\nabc (")
def test_tokenize_random_bytes_gives_tokens_or_parse_error(data):
    try:
        tokens = in_cpu_time(1.0, tokenize, data)
    except ParseError:
        return
    assert isinstance(tokens, list)


@fuzz(120)
@given(st.lists(token_trees(), min_size=1, max_size=6))
def test_tokenize_round_trips_grammar_shaped_commands(tokens):
    line = b" ".join(wire(t) for t in tokens)
    result = in_cpu_time(1.0, tokenize, line)
    assert result == [parsed(t) for t in tokens]
    for got, want in zip(result, tokens):
        literal8 = isinstance(want, tuple) and want[0] == "literal8"   # APPEND keeps its bytes exact
        assert type(got) is (Atom if isinstance(want, Atom) else list if isinstance(want, list)
                             else Literal8 if literal8 else bytes)


@fuzz(60)
@given(st.integers(0, 3 * MAX_DEPTH), st.sampled_from([b"x", b'"q"', b"{1}\r\nz", b""]))
@example(50_000, b"x")
@example(MAX_DEPTH, b"x")
@example(MAX_DEPTH + 1, b"x")
def test_parentheses_nest_up_to_the_limit_and_no_further(depth, inside):
    line = b"(" * depth + inside + b")" * depth
    if depth <= MAX_DEPTH:
        tokens = tokenize(line)
        for _ in range(depth):
            tokens = tokens[0]
    else:
        with pytest.raises(ParseError):
            in_cpu_time(1.0, tokenize, line)


# -- numbers and sequence sets -------------------------------------------------------------

def seq_numbers():
    return st.one_of(st.just("*"), st.integers(1, 0xFFFFFFFF).map(str), st.integers(1, 30).map(str))


@st.composite
def sequence_sets(draw):
    ranges = draw(st.lists(st.tuples(seq_numbers(), st.one_of(st.none(), seq_numbers())), min_size=1, max_size=6))
    return ",".join(a if b is None else f"{a}:{b}" for a, b in ranges), ranges


def reference_members(ranges, largest: int, candidates) -> set[int]:
    """The members a sequence set selects, straight from RFC 3501 §9."""
    value = {"*": largest}
    out = set()
    for a, b in ranges:
        lo, hi = sorted((int(value.get(a, a)), int(value.get(b if b is not None else a, b or a))))
        out.update(n for n in candidates if lo <= n <= hi)
    return out


@fuzz(120)
@given(sequence_sets(), st.integers(1, 50), st.lists(st.integers(1, 60), unique=True, max_size=20))
def test_valid_sequence_sets_select_what_the_rfc_says(seq, largest, values):
    text, ranges = seq
    parsed_ranges = parse_sequence_set(text)
    assert len(parsed_ranges) == len(ranges)
    values = sorted(values)
    want = reference_members(ranges, largest, values)
    matcher = SequenceMatcher(parsed_ranges, largest)
    assert {n for n in values if n in matcher} == want
    assert [values[i] for i in matcher.select(values)] == sorted(want)


def reference_valid(text: str) -> bool:
    """The engine's rule: ASCII digits, at most 10 of them, 1 to 4294967295, or '*'."""
    def ok(n):
        return n == "*" or (re.fullmatch(r"[0-9]{1,10}", n) is not None and 1 <= int(n) <= 0xFFFFFFFF)
    for part in text.split(","):
        a, colon, b = part.partition(":")
        if not ok(a) or (colon and not ok(b)):
            return False
    return bool(text)


@fuzz(150)
@given(st.text("0123456789*:,²٣ -$x", max_size=30))
@example("1:" + "9" * 5000)
@example("4294967296")
@example("0:5")
@example("1,,2")
def test_sequence_sets_parse_exactly_when_valid(text):
    if reference_valid(text):
        assert parse_sequence_set(text)
    else:
        with pytest.raises(ParseError):
            parse_sequence_set(text)


@fuzz(200)
@given(st.text(max_size=15), st.booleans())
@example("²", False)
@example("9" * 5000, False)
def test_number_is_ascii_digits_in_range_or_parse_error(text, nonzero):
    try:
        value = number(text, nonzero=nonzero)
    except ParseError:
        assert not (text.isascii() and text.isdigit() and len(text) <= 10
                    and (not nonzero or int(text)) and int(text) <= 0xFFFFFFFF)
        return
    assert value == int(text) and 0 <= value <= 0xFFFFFFFF


# -- SEARCH keys ------------------------------------------------------------------------------

SEARCH_DATES = st.dates().map(lambda d: Atom(f"{d.day}-{d.strftime('%b')}-{d.year}"))
SEARCH_STRINGS = st.one_of(atoms(), st.text(max_size=10).map(lambda t: t.encode("utf-8")))


@st.composite
def search_keys(draw, depth=0):
    """(tokens of one valid search key, count)"""
    simple = ["ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN",
              "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN"]
    kind = draw(st.sampled_from(["simple", "string", "header", "date", "size", "uid", "seq", "keyword"]
                                + (["not", "or", "list"] if depth < 4 else [])))
    case = draw(st.sampled_from([str.upper, str.lower, str.title]))
    if kind == "simple":
        return [Atom(case(draw(st.sampled_from(simple))))]
    if kind == "string":
        key = draw(st.sampled_from(["BCC", "CC", "FROM", "SUBJECT", "TO", "BODY", "TEXT"]))
        return [Atom(case(key)), draw(SEARCH_STRINGS)]
    if kind == "header":
        return [Atom(case("HEADER")), draw(SEARCH_STRINGS), draw(SEARCH_STRINGS)]
    if kind == "date":
        key = draw(st.sampled_from(["BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"]))
        return [Atom(case(key)), draw(SEARCH_DATES)]
    if kind == "size":
        return [Atom(case(draw(st.sampled_from(["LARGER", "SMALLER"])))), Atom(str(draw(st.integers(0, 2**32 - 1))))]
    if kind == "uid":
        return [Atom(case("UID")), Atom(draw(sequence_sets())[0])]
    if kind == "seq":
        return [Atom(draw(sequence_sets())[0])]
    if kind == "keyword":
        return [Atom(case(draw(st.sampled_from(["KEYWORD", "UNKEYWORD"])))), draw(atoms())]
    if kind == "not":
        return [Atom(case("NOT"))] + draw(search_keys(depth + 1))
    if kind == "or":
        return [Atom(case("OR"))] + draw(search_keys(depth + 1)) + draw(search_keys(depth + 1))
    return [sum(draw(st.lists(search_keys(depth + 1), min_size=1, max_size=3)), [])]


@fuzz(150)
@given(st.lists(search_keys(), min_size=1, max_size=4))
def test_grammar_shaped_search_keys_parse_one_node_per_key(keys):
    nodes = search.parse(sum(keys, []))
    assert len(nodes) == len(keys)
    for node in nodes:
        search.size(node)
        search.header_names(node)


def search_token_soup():
    words = st.sampled_from(["ALL", "NOT", "OR", "UID", "HEADER", "FROM", "BEFORE", "LARGER", "KEYWORD",
                             "1:*", "1-Feb-2024", "99999999999", "*", "31-Feb-2024", "BODY", "SEEN"]).map(Atom)
    leaf = st.one_of(words, atoms(), quoted_strings())
    return st.lists(st.recursive(leaf, lambda inner: st.lists(inner, max_size=4), max_leaves=20), max_size=8)


@fuzz(150)
@given(search_token_soup())
@example([Atom("NOT")] * 5000 + [Atom("ALL")])
@example([Atom("OR")] * 3000 + [Atom("ALL")] * 3001)
@example([Atom("LARGER"), Atom("9" * 5000)])
@example([Atom("BEFORE"), b"\xff-Feb-2024"])
def test_any_search_tokens_parse_or_raise_parse_error(tokens):
    try:
        nodes = in_cpu_time(1.0, search.parse, tokens)
    except ParseError:
        return
    assert nodes


# -- FETCH items and APPEND dates -----------------------------------------------------------

@st.composite
def section_items(draw):
    kind = draw(st.sampled_from(["BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"]))
    numbers = draw(st.lists(st.integers(1, 99999), max_size=4))
    texts = [""] if kind.startswith("BINARY") else ["", "HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT"]
    text = draw(st.sampled_from(texts + (["MIME"] if numbers and not kind.startswith("BINARY") else [])))
    section = ".".join(map(str, numbers))
    if text:
        section = f"{section}.{text}" if section else text
    if text.startswith("HEADER.FIELDS"):
        names = draw(st.lists(st.text("abcXYZ-", min_size=1, max_size=8), min_size=1, max_size=4))
        section += " (" + " ".join(names) + ")"
    partial = ""
    if kind != "BINARY.SIZE" and draw(st.booleans()):
        partial = f"<{draw(st.integers(0, 2**32 - 1))}.{draw(st.integers(1, 2**32 - 1))}>"
    return f"{kind}[{section}]{partial}"


def fetch_items():
    return st.one_of(st.sampled_from(sorted(fetch.SIMPLE)), section_items())


@fuzz(150)
@given(st.lists(fetch_items(), min_size=1, max_size=5))
def test_grammar_shaped_fetch_items_parse_and_their_labels_parse_again(texts):
    command = b"(" + " ".join(texts).encode() + b")"
    items = fetch.parse_items(tokenize(command)[0])
    assert len(items) == len(texts)
    for text, item in zip(texts, items):
        if "[" in text:     # the response names it without .PEEK and the partial range
            assert item.label == re.sub(r"<.*>$", "", text.upper().replace(".PEEK", ""))
        again = fetch.parse_items([Atom(item.label or item.name)])[0]
        assert (again.name, again.label, again.numbers, again.text) == \
               (item.name, item.label, item.numbers, item.text)
        assert [f.upper() for f in again.fields or ()] == [f.upper() for f in item.fields or ()]


@fuzz(150)
@given(st.text("BODYPEKINARSZHTXFL.[]<>()0123456789 -", max_size=40))
@example("BODY[1.2.3.4.5.6]<99999999999999999999.1>")
@example("BODY[HEADER.FIELDS ()]")
@example("BODY[HEADER.FIELDS]")
@example("BINARY[1.MIME]")
@example("BODY[0]")
def test_any_fetch_item_text_parses_or_raises_parse_error(text):
    try:
        items = fetch.parse_items([Atom(text)])
    except ParseError:
        return
    assert items[0].label or items[0].name in fetch.SIMPLE


@fuzz(120)
@given(st.datetimes(min_value=__import__("datetime").datetime(1971, 1, 1),
                    max_value=__import__("datetime").datetime(2106, 1, 1)),
       st.integers(-(23 * 60 + 59), 23 * 60 + 59))
def test_valid_append_dates_keep_their_instant(when, offset_minutes):
    import datetime as dt
    tz = dt.timezone(dt.timedelta(minutes=offset_minutes))
    local = when.replace(microsecond=0, tzinfo=tz)
    sign = "-" if offset_minutes < 0 else "+"
    text = (f"{local.day:2d}-{fetch.MONTHS[local.month - 1]}-{local.year:04d} {local:%H:%M:%S} "
            f"{sign}{abs(offset_minutes) // 60:02d}{abs(offset_minutes) % 60:02d}")
    stamp = fetch.parse_internaldate(text)
    assert stamp == local.timestamp()
    assert fetch.parse_internaldate(fetch.internaldate(stamp)) == stamp


@fuzz(150)
@given(st.text("0123456789-: +JanFebDcSpuly", max_size=30))
@example("01-Jan-0001 00:00:00 +2359")
@example("31-Dec-9999 23:59:59 -2359")
@example("07-Feb-2106 06:28:16 +0000")
@example("29-Feb-2023 00:00:00 +0000")
def test_any_append_date_is_in_range_or_parse_error(text):
    try:
        stamp = fetch.parse_internaldate(text)
    except ParseError:
        return
    assert 0 <= stamp < fetch.INTERNALDATE_END


# -- LIST patterns --------------------------------------------------------------------------------

def reference_pattern(pattern: str) -> re.Pattern:
    """RFC 3501 §6.3.8 as a (backtracking) regex: for short inputs only."""
    out = []
    for ch in pattern:
        out.append(".*" if ch == "*" else "[^/]*" if ch == "%" else re.escape(ch))
    regex = "".join(out)
    if pattern[:5].upper() == "INBOX":
        regex = "(?i:" + "".join(out[:5]) + ")" + "".join(out[5:])
    return re.compile(regex, re.DOTALL)


@fuzz(300)
@given(st.text("ab/*%INBOXinbx&-", max_size=8), st.text("ab/INBOXinbx&-", max_size=10))
@example("INBOX*", "inbox/a")
@example("a%", "a/b")
@example("%/%", "a/b")
@example("*%*", "")
def test_list_patterns_match_what_the_rfc_says(pattern, name):
    assert Pattern(pattern).matches(name) == bool(reference_pattern(pattern).fullmatch(name))


@fuzz(60)
@given(st.lists(st.sampled_from(["*", "%", "a", "/", "x"]), min_size=1, max_size=60),
       st.text("a/", min_size=50, max_size=400))
@example(list("%*%*%*%*%*%*x"), "a" * 400)
def test_list_patterns_take_linear_time(pattern, name):
    in_cpu_time(0.5, Pattern("".join(pattern)).matches, name)


# -- folder names ---------------------------------------------------------------------------------

NAME_CHARS = st.characters(blacklist_categories=["Cs"], blacklist_characters="./\\\x7f",
                           min_codepoint=0x20)


def components():
    return st.text(NAME_CHARS, min_size=1, max_size=10).filter(
        lambda c: not any(0x80 <= ord(ch) < 0xA0 for ch in c))


@fuzz(150)
@given(st.text(max_size=30))
@example("\ud800")
@example("\0")
@example("&AGEAYgBj-")
def test_mutf7_round_trips_any_text(text):
    try:
        encoded = mutf7.encode(text)
    except InvalidInput:
        assert "\0" in text or any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)
        return
    assert all(0x20 <= ord(ch) <= 0x7E for ch in encoded)
    assert mutf7.decode(encoded) == text


@fuzz(150)
@given(st.text("&-ABCDEFabcxyz0189+,/ .", max_size=20))
@example("&-&-")
@example("&AOk-&AOk-")
@example("&AAA-")
@example("&2AA-")
def test_mutf7_decode_accepts_only_canonical_names(text):
    try:
        decoded = mutf7.decode(text)
    except InvalidInput:
        return
    assert mutf7.encode(decoded) == text


@fuzz(120)
@given(st.lists(components(), min_size=1, max_size=4), st.booleans())
def test_valid_folder_names_round_trip_to_disk_names(comps, inbox_first):
    name = "/".join((["inbox"] if inbox_first else []) + comps)
    if len(foldernames.dirname(foldernames.split(name))) > foldernames.MAX_DIRNAME:
        return
    assert foldernames.split(name, new=True)
    stored = foldernames.dirname(foldernames.split(name))
    assert "/" not in stored and stored.startswith(".")
    assert foldernames.name_from_dirname(stored) == foldernames.canonical(name)
    assert foldernames.dirname_problem(stored) is None


FOLDER_TEXT = st.lists(st.sampled_from(list("ab/.\\\0\x01\x7f\x85 &é€") + ["\U0001F600", "..", "INBOX"]),
                       max_size=8).map("".join)


@pytest.fixture(scope="module")
def maildir():
    with tempfile.TemporaryDirectory() as tmp:
        md = Maildir(Path(tmp) / "box")
        md.create()
        md.create_folder("Source")
        yield md


def reference_new_name_ok(name: str) -> bool:
    """The rule for new folder names, as engine/foldernames.py's docstring states it."""
    comps = name.split("/")
    if comps[0].upper() == "INBOX":
        comps[0] = "INBOX"
    for comp in comps:
        if comp in ("", ".", "..") or "." in comp or "\\" in comp or \
                any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in comp):
            return False
    return len(("." + ".".join(mutf7.encode(c) for c in comps)).encode()) <= foldernames.MAX_DIRNAME


def folder_dirs(maildir) -> list[str]:
    return sorted(p.name for p in maildir.path.iterdir() if p.name.startswith("."))


@fuzz(80)
@given(FOLDER_TEXT)
@example("a\\b")
@example("a/../b")
@example("x" * 300)
@example("Source")
@example(" b/\u00e9")
@example("INBOX/INBOX")
@example("inbox/x/y")
def test_every_maildir_entry_point_applies_the_folder_name_rule(maildir, name):
    existing = {f.name for f in maildir.list_folders()}
    before = folder_dirs(maildir)
    if not reference_new_name_ok(name):
        for make in (maildir.create_folder, lambda n: maildir.rename_folder("Source", n)):
            with pytest.raises(InvalidInput):
                make(name)
        assert folder_dirs(maildir) == before
        return
    canonical = foldernames.canonical(name)
    if canonical in existing:
        return
    stored = foldernames.dirname(foldernames.split(name))
    renames = [] if canonical.startswith("Source/") else [
        (lambda: maildir.rename_folder("Source", name), lambda: maildir.rename_folder(name, "Source"))]
    for make, undo in [(lambda: maildir.create_folder(name), lambda: maildir.delete_folder(name))] + renames:
        make()
        assert canonical in {f.name for f in maildir.list_folders()}
        assert maildir.folder(name).path.name == stored
        undo()
        assert stored not in folder_dirs(maildir)
        for parent in sorted(set(folder_dirs(maildir)) - set(before), key=len, reverse=True):
            maildir.delete_folder(foldernames.name_from_dirname(parent))     # made with it
        assert folder_dirs(maildir) == before


# -- address lists (ENVELOPE, SEARCH FROM/TO/CC/BCC) ------------------------------------

ADDRESS_PIECES = st.lists(st.sampled_from(
    [b"a", b"user", b"Name", b"@", b".", b",", b":", b";", b"<", b">", b"(", b")", b'"', b"\\", b" ",
     b"\t", b"\r\n ", b"=?utf-8?q?x=C3=A9?=", b"\xc3\xa9", b"host.example", b"\x00", b"\xff"]),
    max_size=40).map(b"".join)


@fuzz(200)
@given(st.one_of(ADDRESS_PIECES, st.binary(max_size=200)))
@example(b"(" * 100_000)
@example(b'"' + b"\\" * 100_001)
@example(b"a (b (c) d) @ e (f), g:h <i@j> (k);")
def test_any_field_value_gives_envelope_addresses_and_search_text(value):
    """Lenient and linear: any bytes give ENVELOPE address structures of four nstrings
    (encodable), and the text SEARCH compares."""
    addresses = in_cpu_time(1.0, address_list, value)
    for address in addresses:
        assert len(address) == 4 and all(x is None or isinstance(x, bytes) for x in address)
    assert encode_envelope([addresses or None]).startswith(b"(")
    assert isinstance(in_cpu_time(1.0, search.address_text, value), str)

