"""Property-based tests of PREVIEW's text extraction (engine/imap/preview.py) and the
save date read from a file name (engine/imap/savedate.py): for generated messages
(multipart nesting, any content types, charsets and transfer encodings, broken bodies,
HTML fragments) and for arbitrary bytes, a preview is made without raising, holds at
most 256 characters, no control characters and no runs of white space, and HTML is
stripped in linear time. How to run a long version: see tests/test_fuzz_parsers.py.
"""
from __future__ import annotations

import re

from hypothesis import example, given, strategies as st

from engine.imap import mime, preview, savedate
from engine.maildir import to_crlf
from helpers_fuzz import fuzz, in_cpu_time

TYPES = ["text/plain", "text/html", "TEXT/HTML", "text/enriched", "image/png", "application/pdf", "text",
         "bogus/", None]
CHARSETS = [None, "utf-8", "iso-8859-1", "utf-16", "idna", "x-\0bad", "a" * 60, "shift_jis", "utf-7"]
ENCODINGS = [None, "7bit", "base64", "quoted-printable", "x-unknown", "BINARY"]
BODY = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(["<p>", "</p>", "<style>", "</style", "<!--", "-->", "&amp;", "&#x110000;",
                              "&#0;", "<", ">", "<br/>", "> quoted", "-- ", "\n", "=C3=A9", "=\n", "====",
                              "SGVsbG8=", "<head>", "<!DOCTYPE x>", "é", "\t", "\r"]),
             max_size=40).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass")),
)
BAD_TEXT = re.compile(r"[\x00-\x1f\x7f]|\s\s|^\s|\s$")


@st.composite
def leaf(draw):
    headers = []
    ctype = draw(st.sampled_from(TYPES))
    if ctype is not None:
        charset = draw(st.sampled_from(CHARSETS))
        headers.append(f"Content-Type: {ctype}" + (f'; charset="{charset}"' if charset else ""))
    enc = draw(st.sampled_from(ENCODINGS))
    if enc:
        headers.append(f"Content-Transfer-Encoding: {enc}")
    if draw(st.booleans()):
        headers.append(draw(st.sampled_from(["Content-Disposition: attachment", "Content-Disposition: inline"])))
    return "\n".join(headers).encode() + b"\n\n" + draw(BODY)


@st.composite
def multipart(draw, children):
    subtype = draw(st.sampled_from(["mixed", "alternative", "related", "digest"]))
    parts = draw(st.lists(children, max_size=3))
    closed = draw(st.booleans())
    body = b"".join(b"--zz\n" + p + b"\n" for p in parts) + (b"--zz--\n" if closed else b"")
    return f"Content-Type: multipart/{subtype}; boundary=zz".encode() + b"\n\n" + body


def messages():
    return st.recursive(leaf(), lambda inner: multipart(inner), max_leaves=6).map(
        lambda m: b"Subject: x\n" + m)


def check(text: str) -> None:
    assert isinstance(text, str)
    assert len(text) <= preview.MAX_CHARS
    assert not BAD_TEXT.search(text), repr(text)
    text.encode("utf-8")                     # valid UTF-8 on the wire (no lone surrogates)


def preview_of(data: bytes) -> str:
    served = to_crlf(data)
    return preview.preview_text(mime.Part(served, 0, len(served)))


@fuzz(300)
@given(messages())
@example(b"Subject: x\nContent-Type: text/plain; charset=utf-16\n\n\xff\xfe\x00\xd8")
@example(b"Subject: x\nContent-Type: text/html\n\n<style>" + b"<a" * 1000)
def test_preview_of_generated_messages(data):
    check(in_cpu_time(2.0, preview_of, data))


@fuzz(300)
@given(st.binary(max_size=2000))
def test_preview_of_arbitrary_bytes(data):
    check(in_cpu_time(2.0, preview_of, data))
    # a cut message (what PREVIEW reads of a large file) is previewed as well
    check(preview_of(data[:len(data) // 2]))


@fuzz(200)
@given(st.text(max_size=3000))
def test_html_text_never_raises(text):
    check(preview.summary(preview.html_text(text)))


def test_html_stripping_is_linear():
    for hostile in ("<" * 200_000, "<a" * 100_000, "<style>" * 30_000, "<!--" * 50_000, "</" * 100_000,
                    "<!x" * 70_000, "&" * 200_000, "<p " + "x" * 200_000):
        in_cpu_time(1.0, preview.html_text, hostile)


@fuzz(300)
@given(st.text(max_size=40))
@example("1733400000.M1P2.host,S=1:2,S")
@example("99999999999.x")
@example("0.x")
@example("0001.x")
@example("\u0661\u0662.x")            # Arabic-Indic digits are no seconds
def test_save_date_of_any_name(base):
    value = savedate.of(base)
    assert value is None or (isinstance(value, int) and 0 < value < savedate.LAST)
    if value is not None:
        assert int(base.partition(".")[0]) == value


@fuzz(300)
@given(st.text(st.sampled_from("ab \t\n\x00\x1b\u00a0\u3000é"), max_size=1500))
@example("a " * 256 + "b")
@example("x" * 511 + " y")
@example("a" + " " * 600 + "b")                # the first window collapses to little
@example("a" * 250 + " " * 300 + "bbbb")        # ... to a little less than a preview
def test_summary_from_a_window_equals_summary_of_the_whole(text):
    """summary() collapses a first window of the text when that fills a preview: the
    same as collapsing all of it (up to TEXT_BYTES) and cutting."""
    whole = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", text[:preview.TEXT_BYTES]).split())
    assert preview.summary(text) == whole[:preview.MAX_CHARS].rstrip()
