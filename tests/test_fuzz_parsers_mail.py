"""Property-based tests of the mail-side parsers (issue 19): addresses, the SMTP command
arguments (MAIL FROM / RCPT TO parameters, SIZE, EHLO names), DATA reading and dot
unstuffing, POP3 numbers, charsets, TOML configuration (mailctl.toml and domain files,
random and mutated) and injected mail (sendmail preparation, the local submission
sender check). How to run a long version: see tests/test_fuzz_parsers.py.
"""
from __future__ import annotations

import asyncio
import ipaddress
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, strategies as st

from engine import charsets, localsubmit, newroot, settings as settings_mod, tomlfile
from engine.accept import local as sendmail
from engine.addresses import Address, normalize_domain, parse_address, parse_sender, parse_target
from engine.directory import Directory
from engine.errors import ConfigError, InvalidInput
from engine.pop3.session import _number as pop3_number
from engine.root import Root
from engine.smtp import data as smtp_data
from engine.smtp.adapter import _BAD_SIZE
from engine.smtp.policy import normalize_sender
from engine.smtp.server import MailSMTP, _helo_ok
from helpers_fuzz import fuzz, in_cpu_time

# -- addresses ---------------------------------------------------------------------------

ATEXT = "abcXYZ0189!#$%&'*+=?^_`{|}~-"
LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
LOCALS = st.lists(st.text(ATEXT, min_size=1, max_size=8), min_size=1, max_size=3).map(".".join).filter(
    lambda s: len(s) <= 64)
DOMAINS = st.tuples(st.lists(LABEL, min_size=1, max_size=3), st.from_regex(r"[a-z]{2,6}", fullmatch=True)).map(
    lambda t: ".".join(t[0] + [t[1]]))
ADDRESSES = st.tuples(LOCALS, DOMAINS).map("@".join)


@fuzz(200)
@given(ADDRESSES)
@example("Bob.O'Neil@Example.COM")
def test_valid_addresses_parse_to_their_lower_case_form(text):
    a = parse_address(text)
    assert str(a) == text.lower()
    assert parse_address(str(a)) == a


@fuzz(300)
@given(st.text(max_size=40))
@example("a@\u0080.com")
@example("a@xn--.com")
@example("a@" + "\u00e9" * 70 + ".com")
@example("a@b..c")
@example("a\0@b.com")
def test_any_text_is_an_address_or_invalid_input(text):
    for parse in (parse_address, lambda t: parse_target(t, "example.com")):
        try:
            a = parse(text)
        except InvalidInput as e:
            assert "\n" not in str(e)
            continue
        assert isinstance(a, Address) and "/" not in a.local and a.domain == normalize_domain(a.domain)


@fuzz(300)
@given(st.text(st.sampled_from("ab/.@-+=x\0 \\"), max_size=24))
@example("SRS0=ab/c=AB=a.example=u@other.example")
@example("../x@example.com")
def test_a_sender_is_an_address_that_may_hold_a_slash_and_nothing_else_more(text):
    """parse_sender takes what parse_address takes, and beyond it only local parts with '/'."""
    try:
        a = parse_sender(text)
    except InvalidInput as e:
        assert "\n" not in str(e)
        with pytest.raises(InvalidInput):
            parse_address(text)
        return
    assert a.domain == normalize_domain(a.domain) and ".." not in a.local and not a.local.startswith(".")
    if "/" not in a.local:
        assert parse_address(text) == a


@fuzz(200)
@given(st.text(st.characters(blacklist_categories=["Cs"]), max_size=30))
@example("xn--ls8h.la")
@example("Example.COM")
@example("\u00df.de")
def test_any_domain_normalises_or_is_invalid_input(text):
    try:
        name = normalize_domain(text)
    except InvalidInput:
        return
    assert name.isascii() and name == name.lower() and normalize_domain(name) == name


# -- SMTP command arguments --------------------------------------------------------------

class ArgumentParser(MailSMTP):
    """MailSMTP's own argument parsing (_getaddr, aiosmtpd's _getparams) without a
    connection: only the attribute they read is set."""

    def __init__(self):      # noqa: D107 - no session, no transport
        self.local_part_limit = 0


PARSER = ArgumentParser()


def mail_argument(arg: str, keyword: str = "FROM:"):
    """What the server makes of a MAIL FROM / RCPT TO argument, following aiosmtpd's
    smtp_MAIL step by step: None when refused, else (sender, SIZE or None)."""
    if keyword == "FROM:" and _BAD_SIZE.search(arg):
        return None
    arg = PARSER._strip_command_keyword(keyword, arg)
    if arg is None:
        return None
    address, params = PARSER._getaddr(arg)
    if not address:
        return None
    options = PARSER._getparams(params.upper().split())
    if options is None:
        return None
    size = options.pop("SIZE", None)
    if size and (isinstance(size, bool) or not size.isdigit()):
        return None
    sender = normalize_sender(address)
    return (sender, int(size) if size else None) if sender is not None else None


def params():
    return st.lists(st.one_of(st.integers(0, 10**20 - 1).map(lambda n: f"SIZE={n}"),
                              st.sampled_from(["BODY=8BITMIME", "SMTPUTF8", "BODY=7BIT", "size=12"])), max_size=3)


@fuzz(200)
@given(ADDRESSES, params(), st.sampled_from(["", " "]))
def test_grammar_shaped_mail_from_gives_the_sender_and_size(address, options, space):
    sizes = [int(o[5:]) for o in options if o.upper().startswith("SIZE=")]
    got = mail_argument(f"FROM:{space}<{address}>" + "".join(" " + o for o in options))
    assert got == (address.lower(), sizes[-1] if sizes else None)


@fuzz(300)
@given(st.text(max_size=60), st.sampled_from(["FROM:", "TO:"]))
@example("FROM:<a@b.c> SIZE=\u00b2", "FROM:")
@example("FROM:<a@b.c> \u017fIZE=\u00b2", "FROM:")
@example("FROM:<a@b.c> SIZE=" + "9" * 5000, "FROM:")
@example("FROM:<\"a b\"@[1.2.3.4]>", "FROM:")
@example("TO:<@a,@b:c@d.ef>", "TO:")
def test_any_mail_or_rcpt_argument_is_parsed_or_refused(arg, keyword):
    got = mail_argument(arg, keyword)
    assert got is None or isinstance(got[0], str)


@fuzz(300)
@given(st.one_of(st.text(max_size=30), st.ip_addresses(v=4).map(lambda a: f"[{a}]"),
                 st.ip_addresses(v=6).map(lambda a: f"[IPv6:{a}]"),
                 st.tuples(*[st.integers(0, 999)] * 4).map(lambda t: "[%d.%d.%d.%d]" % t)))
@example("[999.1.1.1]")
@example("[IPv6:fe80::1%eth0]")
def test_helo_names_are_host_names_or_real_address_literals(name):
    ok = _helo_ok(name)
    if name.startswith("["):
        literal = name[1:-1]
        try:
            real = name.endswith("]") and "%" not in name and bool(
                ipaddress.IPv6Address(literal[5:]) if literal[:5].lower() == "ipv6:" else ipaddress.IPv4Address(literal))
        except ValueError:
            real = False
        assert ok == real
    elif ok:
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) and len(name) <= 254


# -- DATA ---------------------------------------------------------------------------------

def read_data(chunks: list[bytes], limit: int = 0, mend_lf: bool = False):
    async def run():
        reader = asyncio.StreamReader()

        async def feed():
            for chunk in chunks:
                reader.feed_data(chunk)
                await asyncio.sleep(0)
            reader.feed_eof()
        feeder = asyncio.ensure_future(feed())
        result = await smtp_data.read_data(reader, limit, mend_lf=mend_lf)
        await feeder
        return result, await reader.read()
    return asyncio.run(run())


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


LINE = st.one_of(st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
                 st.sampled_from([b".", b"..", b".x", b"", b"From x"]))


@fuzz(200)
@given(st.lists(LINE, max_size=8), st.lists(st.integers(0, 400), max_size=6), st.binary(max_size=10))
@example([b"."], [1, 2, 3], b"QUIT\r\n")
@example([b""], [0], b"")
def test_data_is_unstuffed_exactly_and_what_follows_stays(lines, cuts, after):
    message = b"".join(line + b"\r\n" for line in lines)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    result, rest = read_data(split_at(stuffed + b".\r\n" + after, cuts))
    assert bytes(result.content) == message and not result.too_big
    assert not result.bare_cr and not result.bare_lf
    assert rest == after


@fuzz(200)
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6), st.integers(0, 200))
@example(b"a\nb\r\n", [], 0)
@example(b"a\rb\r\n", [2], 0)
@example(b"\r\n.", [], 0)
def test_any_data_ends_at_the_end_marker_with_honest_flags(body, cuts, limit):
    if b"\r\n.\r\n" in b"\r\n" + body + b"\r\n":      # an end marker before the end
        body = body.replace(b".", b",")
    result, rest = read_data(split_at(body + b"\r\n.\r\n", cuts), limit)
    assert rest == b""
    wire = b"\r\n" + body + b"\r\n"
    if result.too_big:
        assert limit and len(body) + 2 > limit
        return
    assert result.bare_lf == (wire.count(b"\n") != wire.count(b"\r\n"))
    assert result.bare_cr == (wire.count(b"\r") != wire.count(b"\r\n"))
    assert bytes(result.content) == wire.replace(b"\r\n.", b"\r\n")[2:]


def mended_by_lines(body: bytes) -> tuple[bytes, bool, bool]:
    """What DATA with bare LF mended must give, line by line (a reference for the reader,
    which works on chunks): (the content, whether a lone "." line touches a bare LF,
    whether there is a bare CR). A line ends in CRLF or a bare LF; only after CRLF is a
    leading dot stuffing."""
    parts = re.split(rb"(\r\n|\n)", b"\r\n" + body + b"\r\n")
    lines, ends = parts[2:-1:2], parts[1:-1:2]          # ends[i] comes before lines[i]
    out = b"".join((line[1:] if before == b"\r\n" and line[:1] == b"." else line) + b"\r\n"
                   for line, before in zip(lines, ends))
    smuggled = any(line == b"." and b"\n" in (ends[i], ends[i + 1]) for i, line in enumerate(lines))
    return out, smuggled, any(b"\r" in line for line in lines)


PIECES = st.sampled_from([b"a", b"x.y", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n", b"\n\n", b" "])


@fuzz(300)
@given(st.lists(PIECES, max_size=40).map(b"".join), st.lists(st.integers(0, 400), max_size=8),
       st.binary(max_size=6))
@example(b"a\n.x\n..y", [], b"")
@example(b"a\n.\nRSET", [2, 3], b"")
@example(b"a\r", [2], b"")                                  # CR at a chunk's end, LF the next's start
@example(b"a\n", [2, 3, 4, 5, 6], b"QUIT\r\n")             # "\n.\r\n": never the end, a lone dot
def test_mended_data_is_what_its_lines_say_wherever_the_chunks_end(body, cuts, after):
    if b"\r\n.\r\n" in b"\r\n" + body + b"\r\n":                 # an end marker before the end
        body = body.replace(b".", b",")
    wire = body + b"\r\n.\r\n"
    result, rest = read_data(split_at(wire + after, cuts), mend_lf=True)
    content = bytes(result.content)
    expected, smuggled, bare_cr = mended_by_lines(body)
    assert rest == after and not result.too_big
    assert content == expected                                # no step depends on where a read ends
    assert content.count(b"\n") == content.count(b"\r\n")      # no bare LF is left
    assert (result.bare_lf, result.bare_cr) == (smuggled, bare_cr)
    assert result.mended == (wire.count(b"\n") != wire.count(b"\r\n"))
    if not result.mended:                                     # CRLF-only input: as without mending
        plain, _ = read_data([wire + after])
        assert (content, result.bare_cr, result.bare_lf) == (bytes(plain.content), plain.bare_cr, plain.bare_lf)


@fuzz(200)
@given(st.lists(PIECES, max_size=40).map(b"".join))
def test_mended_lines_leave_crlf_input_as_it_is(body):
    region = b"\r\n" + body.replace(b"\r\n", b"\n").replace(b"\r", b"").replace(b"\n", b"\r\n") + b"\r\n"
    lines, had_bare_lf, smuggled, bare_cr = smtp_data.mended_lines(region)
    assert lines == smtp_data.unstuffed(region) and not (had_bare_lf or smuggled or bare_cr)


# -- POP3 ---------------------------------------------------------------------------------

@fuzz(200)
@given(st.text(max_size=12))
@example("\u00b2")
@example("9" * 5000)
def test_pop3_numbers_are_ascii_digits_or_none(text):
    n = pop3_number(text)
    assert (n is not None) == bool(re.fullmatch(r"[0-9]{1,9}", text))
    assert n is None or n == int(text)


# -- charsets -------------------------------------------------------------------------------

CHARSET_NAMES = st.one_of(st.none(), st.text(max_size=20), st.sampled_from(
    ["idna", "undefined", "punycode", "base64", "rot13", "hex", "zlib", "utf-8\0", "unicode-escape",
     "utf-16", "utf-32", "cp1252", "iso-2022-jp", "utf-7", "mbcs", "uu", "bz2", "quopri", "x" * 100]))


@fuzz(300)
@given(st.binary(max_size=60), CHARSET_NAMES)
@example(b"\\x\\u12", "unicode-escape")
@example(b"+AGE-", "utf-7")
def test_charset_decode_never_raises(data, charset):
    assert isinstance(charsets.decode(data, charset), str)


@fuzz(300)
@given(st.one_of(st.text(max_size=60), st.tuples(CHARSET_NAMES.map(lambda c: c or ""), st.sampled_from("bBqQx"),
                                                   st.text("AZaz09+/=_?", max_size=12)).map(
                                                       lambda t: "a =?%s?%s?%s?= b" % t)))
@example("=?idna?q?x?=")
@example("=?utf-8?b?====?=")
def test_encoded_words_decode_never_raises(text):
    assert isinstance(charsets.decode_words(text), str)


# -- TOML configuration ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def root():
    with tempfile.TemporaryDirectory() as tmp:
        r = Root(Path(tmp) / "root")
        newroot.init_root(r, hostname="localhost", high_ports=True)
        yield r


@pytest.fixture(scope="module")
def cfg():
    """The settings of a fresh root (the TOML tests rewrite the files of `root`)."""
    with tempfile.TemporaryDirectory() as tmp:
        r = Root(Path(tmp) / "root")
        newroot.init_root(r, hostname="localhost", high_ports=True)
        yield settings_mod.load(r.config_file)


SAMPLE = settings_mod.render_sample()
DOMAIN_FILE = """enabled = true
domain_aliases = ["example.net"]
catch_all = ""

[accounts.a]
password = "$argon2id$v=19$m=65536,t=3,p=4$ma8hgYJt7neFuZUc950eCw$BR6DC4Hmy9/PQWa6h8kL2CJegPudDBboEgE4UIgR0Ug"
name = "A"
quota_mb = 0
enabled = true
forward = ["b@example.org"]

[aliases.info]
targets = ["a"]

[lists.team]
members = ["a", "x@example.org"]
mode = "announce"
sender = "a"
"""
TOML_BITS = st.sampled_from(["[", "]", "{", "}", "=", '"', "'", "\n", "#", ".", ",", "[[x]]", "true", "1e9",
                             "-0", "1979-05-27T07:32:00Z", '"""', "\\u0000", "\t", "\r", "\0", "\u00e9",
                             "[" * 600, "a = " + "[" * 2000 + "]" * 2000, "x = {a = {b = {c = 1}}}"])


@st.composite
def mutated(draw, text: str) -> str:
    """The text with a few hand-edit accidents: lines lost, doubled or cut, and bits
    of TOML syntax inserted or values replaced."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "double", "cut", "insert", "value"]))
        if op == "drop":
            del lines[i]
        elif op == "double":
            lines.insert(i, lines[i])
        elif op == "cut":
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
        elif op == "insert":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.one_of(TOML_BITS, st.text(max_size=5))) + lines[i][at:]
        elif "=" in lines[i]:
            value = draw(st.sampled_from(['""', "0", "-1", "true", "[]", '["a"]', '"bad host\\r\\nX: y"',
                                          "99999999999999999999", '"*"', "{}", '"0.0.0.0/99"', "1.5"]))
            lines[i] = lines[i].split("=", 1)[0] + "= " + value
        if not lines:
            lines = [""]
    return "\n".join(lines)


def one_line_problems(error: ConfigError, where: str) -> None:
    assert "\n" not in str(error)
    for problem in error.problems:
        assert "\n" not in problem and re.match(rf"{re.escape(where)}:\d+: ", problem), problem


@fuzz(150)
@given(st.one_of(mutated(SAMPLE), st.lists(TOML_BITS, max_size=8).map("".join), st.text(max_size=40)))
@example("")
@example("a = " + "[" * 50_000 + "]" * 50_000)
@example('[server]\nhostname = "bad host\\r\\nX-Injected: y"\n')
def test_mailctl_toml_loads_or_names_file_and_line(root, text):
    root.config_file.write_text(text, encoding="utf-8")
    try:
        loaded = in_cpu_time(5.0, settings_mod.load, root.config_file, "mailctl.toml")
    except ConfigError as e:
        one_line_problems(e, "mailctl.toml")
        return
    assert loaded.server.hostname


@fuzz(150)
@given(st.one_of(mutated(DOMAIN_FILE), st.lists(TOML_BITS, max_size=8).map("".join)))
@example("")
@example("[accounts]\na = 1\n")
@example("[lists.x]\nmembers = [" + ", ".join(['"a@b.cd"'] * 10) + "]\nmode = 1\n")
def test_domain_files_load_or_name_file_and_line(root, text):
    root.domain_file("example.com").write_text(text, encoding="utf-8")
    directory, problems = Directory.load_with_problems(root)
    for problem in problems:
        assert "\n" not in problem and re.match(r"domains/example\.com\.toml:\d+: ", problem), problem
    try:
        Directory.load(root)
    except ConfigError as e:
        assert problems and "\n" not in str(e)
    else:
        assert not problems and "example.com" in directory.domains


@fuzz(150)
@given(st.one_of(st.binary(max_size=80), mutated(SAMPLE).map(lambda t: t.encode("utf-8", "surrogatepass"))))
@example(b"a = 1\n\xff\n")
def test_any_file_bytes_read_as_toml_or_config_error(root, raw):
    path = root.path / "fuzz.toml"
    path.write_bytes(raw)
    try:
        data, text = tomlfile.read(path, "fuzz.toml")
    except ConfigError as e:
        one_line_problems(e, "fuzz.toml")
        return
    assert isinstance(data, dict) and isinstance(text, str)


# -- injected mail ---------------------------------------------------------------------------

HEADER_NAMES = st.sampled_from(["From", "To", "Cc", "Bcc", "Subject", "X-Sender", "X-Receiver", "Date", "x"])


@st.composite
def header_shaped(draw):
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    fields = draw(st.lists(st.tuples(HEADER_NAMES, st.one_of(ADDRESSES, st.text(max_size=20))), max_size=6))
    head = b"".join(f"{n}: {v}".encode("utf-8", "surrogatepass") + eol for n, v in fields)
    body = draw(st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"")))
    return head + eol + body, body


@fuzz(200)
@given(header_shaped(), st.booleans(), st.booleans(), st.lists(ADDRESSES, max_size=2))
def test_header_shaped_mail_is_prepared_with_its_body_unchanged(message, extract, x_headers, recipients):
    data, body = message
    try:
        prepared = sendmail.prepare(data, recipients=recipients, extract=extract, use_x_headers=x_headers,
                                    hostname="example.com")
    except InvalidInput as e:
        assert "\n" not in str(e)
        return
    assert prepared.recipients and prepared.data.startswith(b"Received: ") and prepared.data.endswith(body)
    assert all(str(parse_address(r)) == r for r in prepared.recipients)
    assert b"\nBcc:" not in prepared.data.split(b"\n\n")[0].replace(b"\r", b"")


@fuzz(200)
@given(st.binary(max_size=200))
@example(b"From x\nTo: a@b.cd\n\nhi")
@example(b"To: a@b.cd\n \n\n")
@example(b"To: a@b.cd\n\n\0")
def test_any_bytes_are_prepared_or_invalid_input(data):
    try:
        prepared = sendmail.prepare(data, recipients=["a@example.com"], hostname="example.com")
    except InvalidInput as e:
        assert "\n" not in str(e)
        return
    assert prepared.recipients == ["a@example.com"]
    assert b"\0" not in data and data.strip()       # binary data and empty files are refused


@fuzz(200)
@given(st.one_of(st.none(), st.text(max_size=30), ADDRESSES), st.text("abc-_.", min_size=1, max_size=8))
@example("\n", "_")
@example("a@b.cd\r\nX: y", "bob")
def test_local_submission_sender_is_own_or_refused(cfg, requested, login):
    caller = localsubmit.Caller(uid=54321, pid=1, login=login)
    own = localsubmit.mapped_sender(cfg, login)
    try:
        sender = localsubmit.check_sender(cfg, caller, requested)
    except InvalidInput as e:
        assert "\n" not in str(e) and requested is not None
        return
    assert sender == own


# -- header field values (engine/headers.py: DMARC's and the header-sender check's From) --

FIELD_NAMES = st.sampled_from(["From", "from", "FROM", "To", "Subject", "Reply-To", "X-From", "Fromm"])
FIELD_WORDS = st.lists(st.sampled_from(["a@b.example", "<c@d.example>", '"B, C"', "Name", ",", "(x)", "=?utf-8?q?x?="]),
                       max_size=4)


@fuzz(300)
@given(st.lists(st.tuples(FIELD_NAMES, FIELD_WORDS, st.sampled_from([" ", "\r\n ", "\r\n\t", "  "])), max_size=6),
       st.sampled_from(["From", "To", "Subject"]))
def test_field_values_are_the_email_packages_unfolded(fields, wanted):
    from email.parser import BytesHeaderParser
    from email.policy import compat32
    from engine import headers
    block = "".join(f"{name}: {fold.join(words)}\r\n" for name, words, fold in fields).encode()
    theirs = [" ".join(str(v).split()) for v in
              BytesHeaderParser(policy=compat32).parsebytes(block).get_all(wanted) or []]
    assert [" ".join(v.split()) for v in headers.field_values(block, wanted)] == theirs


@fuzz(300)
@given(st.binary(max_size=300), st.sampled_from(["From", "from", ""]))
def test_any_header_bytes_give_values_without_line_ends(block, wanted):
    from engine import headers
    values = in_cpu_time(1.0, headers.field_values, block, wanted)
    assert all(isinstance(v, str) and "\n" not in v for v in values)
