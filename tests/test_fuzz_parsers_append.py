"""Property-based tests of APPEND's parsers (the fuzzer of tests/test_fuzz_parsers*.py):
the IMAP URLs of CATENATE (engine/imap/imapurl.py) and the MULTIAPPEND / CATENATE
argument lists (engine/imap/appendcmd.py). Each returns a well-formed result or raises
its documented error, in linear time; grammar-shaped input round-trips."""
from __future__ import annotations

from urllib.parse import quote

from hypothesis import example, given, strategies as st

from engine.imap import imapurl
from engine.imap.appendcmd import Incoming, parse_messages
from engine.imap.errors import CommandError
from engine.imap.parser import Atom, Literal, Literal8, ParseError, tokenize
from helpers_fuzz import fuzz, in_cpu_time

URL_CHARS = "/;=.%:@-_~!$&'()*+,?#[] \r\n\x00\x7fabINBOXUIDVALIDTYSECTPARHMTX0123456789é"


def check_url(url):
    assert isinstance(url, imapurl.ImapUrl)
    assert url.mailbox is None or (url.mailbox and all(" " <= c <= "~" for c in url.mailbox))
    assert 1 <= url.uid <= 0xFFFFFFFF
    assert url.uidvalidity is None or 1 <= url.uidvalidity <= 0xFFFFFFFF
    assert len(url.numbers) <= imapurl.MAX_SECTION_DEPTH and all(1 <= n <= 0xFFFFFFFF for n in url.numbers)
    assert url.text in ("", "HEADER", "TEXT", "MIME") and (url.text != "MIME" or url.numbers)


@fuzz(300)
@given(st.text(URL_CHARS, max_size=80))
@example("/INBOX;UIDVALIDITY=1/;UID=2/;SECTION=1.2.MIME/;PARTIAL=0.5")
@example("imap://a%40b@host/x/y/;UID=1")
@example("/" + "a/" * 1000 + ";UID=")
@example(";UID=1/;SECTION=" + "1." * 1000 + "TEXT")
def test_any_url_parses_or_is_badurl(text):
    try:
        url = in_cpu_time(1.0, imapurl.parse, text)
    except imapurl.BadUrl:
        pass
    else:
        check_url(url)
    echoed = imapurl.echo(text)
    assert echoed and "]" not in echoed and all("!" <= c <= "~" for c in echoed) and len(echoed) <= 200


MAILBOX = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=20)
NZ = st.integers(1, 0xFFFFFFFF)


@fuzz(200)
@given(st.one_of(st.none(), MAILBOX), st.one_of(st.none(), NZ), NZ,
       st.lists(NZ, max_size=5), st.sampled_from(["", "HEADER", "TEXT", "MIME"]),
       st.one_of(st.none(), st.tuples(st.integers(0, 0xFFFFFFFF), st.one_of(st.none(), NZ))),
       st.one_of(st.none(), st.text("abc", min_size=1, max_size=5)))
def test_grammar_shaped_urls_round_trip(mailbox, uidvalidity, uid, numbers, text, partial, user):
    if text == "MIME" and not numbers:
        numbers = [1]
    if mailbox is None:
        uidvalidity = user = None            # a relative URL names neither
    section = ".".join([str(n) for n in numbers] + ([text] if text else []))
    url = "" if mailbox is None else "/" + quote(mailbox, safe="")
    if user is not None:
        url = f"imap://{user}@localhost" + url
    if uidvalidity is not None:
        url += f";UIDVALIDITY={uidvalidity}"
    url += (f"/;UID={uid}" if mailbox is not None else f";UID={uid}")
    if section:
        url += f"/;SECTION={section}"
    if partial is not None:
        url += f"/;PARTIAL={partial[0]}" + (f".{partial[1]}" if partial[1] is not None else "")
    parsed = in_cpu_time(1.0, imapurl.parse, url)
    check_url(parsed)
    assert parsed == imapurl.ImapUrl(user, mailbox, uidvalidity, uid, tuple(numbers), text, partial)


def arg_soup():
    leaf = st.one_of(
        st.sampled_from([Atom("CATENATE"), Atom("TEXT"), Atom("URL"), Atom("\\Seen"), Atom("x"), Atom("NIL")]),
        st.sampled_from([b"14-Jul-2023 02:44:25 -0700", b"junk", b"/INBOX/;UID=1", b""]),
        st.binary(max_size=20).map(Literal), st.binary(max_size=20).map(Literal8))
    return st.lists(st.recursive(leaf, lambda inner: st.lists(inner, max_size=4), max_leaves=12), max_size=10)


@fuzz(300)
@given(arg_soup())
def test_any_append_arguments_give_messages_or_an_error(args):
    try:
        messages = in_cpu_time(1.0, parse_messages, args)
    except (CommandError, ParseError):
        return
    assert messages and all(isinstance(m, Incoming) for m in messages)
    for m in messages:
        assert (m.data is None) != (m.parts is None)
        if m.parts is not None:
            assert m.parts and all(kind in ("TEXT", "URL") for kind, _ in m.parts)


@fuzz(150)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.binary(min_size=1, max_size=30)), min_size=1, max_size=6))
def test_multiappend_commands_tokenize_into_their_messages(specs):
    """A command as a client sends it: flags and dates where given, literals told apart
    from the quoted date by tokenize(spooled=...)."""
    line = b"APPEND"
    for flagged, dated, body in specs:
        if flagged:
            line += b" (\\Seen)"
        if dated:
            line += b' "14-Jul-2023 02:44:25 -0700"'
        line += b" {%d}\r\n" % len(body) + body
    messages = parse_messages(tokenize(line, spooled={})[1:])
    assert [(bool(m.flags), m.date is not None, bytes(m.data)) for m in messages] == specs
