"""Property-based tests of the SRS address parser (engine/srs.py): any recipient text a
client sends either reverses to a plain address we may send to, or is refused with
SRSError; nothing else escapes, and what we make always reverses. How to run a long
version: see tests/test_fuzz_parsers.py."""
from __future__ import annotations

from hypothesis import example, given, strategies as st

from engine import srs
from engine.addresses import normalize_domain, parse_address
from helpers_fuzz import fuzz, in_cpu_time

SIGNER = srs.Signer((b"fuzz-secret", b"older-secret"), 4, 21)
NOW = 1_800_000_000.0
PIECES = st.sampled_from(["SRS0", "SRS1", "srs0", "=", "==", "+", "-", "@", ".", "/", "example.com", "orig.example",
                          "AA", "zz", "\x00", "\r\n", " ", "é", "[127.0.0.1]", "localhost", "..", "a" * 70])
HOSTILE = st.lists(st.one_of(PIECES, st.text(max_size=12)), max_size=14).map("".join)
ATEXT = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+=?^_`{|}~-",
                min_size=1, max_size=20)
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
DOMAIN = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(LABEL, min_size=1, max_size=3),
                   st.sampled_from(["example", "com", "org"]))


def valid(made):
    """A reversed address is a plain address (or an SRS0 one of the first forwarder),
    never a route, an IP literal or a path."""
    local, _, domain = made.rpartition("@")
    assert local and "/" not in made and "@" not in local and "[" not in made
    assert normalize_domain(domain) == domain.lower()


@fuzz(1500)
@given(HOSTILE)
@example("SRS0=XjO9=2V=otherdomain.com=test@example.com")
@example("SRS1=====@example.com")
@example("SRS0=" + "=" * 400 + "@example.com")
@example("SRS0=abcd=AA=[127.0.0.1]=x@example.com")
@example("SRS1=abcd=x==" * 40 + "@example.com")
def test_any_text_reverses_to_a_plain_address_or_is_refused(text):
    try:
        made = in_cpu_time(0.5, srs.reverse, SIGNER, text, NOW)
    except srs.SRSError:
        return
    valid(made)


@fuzz(800)
@given(ATEXT, DOMAIN, DOMAIN, st.integers(0, 21))
def test_what_we_make_reverses_to_the_sender_and_an_alteration_is_refused(local, host, ours, age_days):
    sender = f"{local}@{host}"
    made = srs.forward(SIGNER, sender, ours, NOW - age_days * 86400)
    if srs.tag_of(local) is None:
        assert made.startswith("SRS0=") and made.endswith("@" + ours)
        assert srs.reverse(SIGNER, made, NOW) == sender
        assert srs.reverse(SIGNER, made.upper(), NOW).lower() == sender.lower()     # case smashed
        h = made[5:9]
        forged = made.replace(h, h[:3] + ("x" if h[3] not in "xX" else "y"), 1)
        try:
            srs.reverse(SIGNER, forged, NOW)
            raise AssertionError(f"{forged} accepted")
        except srs.SRSError:
            pass
    else:
        try:
            valid(srs.reverse(SIGNER, made, NOW))
        except srs.SRSError:
            pass


@fuzz(500)
@given(ATEXT, DOMAIN)
def test_an_srs0_sender_becomes_srs1_that_reverses_to_it(rest, first):
    sender = f"SRS0={rest}@{first}"
    made = srs.forward(SIGNER, sender, "example.com", NOW)
    assert made.startswith("SRS1=") and f"={first}==" in made
    back = srs.reverse(SIGNER, made, NOW)
    assert back.lower() == sender.lower()
    if len(back.partition("@")[0]) <= 64:
        parse_address(back)
