"""Property-based tests of what virus scanners answer (engine/scan/): clamd's INSTREAM reply,
an external scanner's output, and the MIME surgery of the strip action. Whatever a scanner
or a sender gives, the answer is a verdict or ScanFailed, a virus name fit for a reply
line, and a stripped message whose other bytes are the sender's. How to run a long
version: see tests/test_fuzz_parsers.py."""
from __future__ import annotations

import pytest
from hypothesis import example, given, strategies as st

from engine.scan import clamd, command, strip
from engine.scan.verdict import Found, ScanFailed
from helpers_fuzz import fuzz

NAME = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=60)


def fit_for_a_reply(name: str) -> bool:
    return 0 < len(name) <= 200 and name.isascii() and name.isprintable() and name == name.strip()


@fuzz(500)
@given(st.binary(max_size=300))
@example(b"stream: OK\0")
@example(b"stream: Eicar FOUND\0")
@example(b"stream: \r\nBcc: x FOUND\0")
@example(b"stream:  FOUND\0")
@example(b"INSTREAM size limit exceeded. ERROR\0")
@example(b"1: stream: Win.Test.EICAR_HDB-1 FOUND\0")
def test_any_clamd_reply_is_a_verdict_or_scan_failed(raw):
    try:
        found = clamd.parse_reply(raw)
    except ScanFailed as e:
        assert "\n" not in str(e) and "\r" not in str(e)
        return
    assert isinstance(found, Found) and found.engine == "ClamAV"
    if found.infected:
        assert fit_for_a_reply(found.name)
        assert raw.rstrip(b"\0").rstrip(b"\r\n").endswith(found.name.encode() + b" FOUND")
    else:
        assert raw.rstrip(b"\0").rstrip(b"\r\n").endswith(b"stream: OK")


@fuzz(300)
@given(NAME)
def test_every_printable_name_clamd_gives_is_read_back(name):
    found = clamd.parse_reply(f"stream: {name} FOUND\0".encode())
    assert found.name == name


@fuzz(300)
@given(st.text(max_size=300))
@example("/tmp/x: Eicar-Test-Signature FOUND\n\n----------- SCAN SUMMARY -----------\n")
@example("\x1b[31mbad\x1b[0m\n")
def test_any_command_output_gives_a_name_fit_for_a_reply_or_none(output):
    name = command.name_in_output(output)
    assert name is None or fit_for_a_reply(name)


@pytest.mark.parametrize("address", ["/run/clamav/clamd.ctl", "127.0.0.1:3310", "[::1]:3310", "localhost:3310"])
def test_addresses_parse(address):
    clamd.parse_address(address)


@fuzz(300)
@given(st.text(max_size=40))
def test_any_address_parses_or_is_a_value_error(address):
    try:
        family, where = clamd.parse_address(address)
    except ValueError:
        return
    assert address.startswith("/") or (1 <= where[1] <= 65535)


PART = st.tuples(st.sampled_from(["text/plain", "application/octet-stream", "application/zip", "message/rfc822"]),
                 st.sampled_from(["base64", "7bit", "quoted-printable", "x-weird"]),
                 st.binary(max_size=80), st.booleans())


@fuzz(300)
@given(st.lists(PART, min_size=1, max_size=6), st.sampled_from([b"\r\n", b"\n"]), st.binary(max_size=40))
def test_strip_keeps_every_byte_outside_the_infected_parts(parts, eol, preamble):
    pieces, plain_infected = [], []
    for i, (ctype, cte, body, bad) in enumerate(parts):
        body = body.replace(b"\r", b"").replace(b"\n", b"").replace(b"--", b"") + (b"VIRUS%d!" % i if bad else b"")
        if bad and cte in ("7bit", "x-weird"):
            plain_infected.append(b"VIRUS%d!" % i)      # seen as it is by the part's scan
        pieces.append(b"--zz\r\nContent-Type: " + ctype.encode() + b"; name=\"f%d\"\r\n" % i
                      + b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + body + b"\r\n")
    message = (b"Subject: s\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
               + preamble.replace(b"--", b"").replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
               + b"".join(pieces) + b"--zz--\r\n")
    if eol == b"\n":
        message = message.replace(b"\r\n", b"\n")

    def scan_part(data: bytes) -> Found:
        return Found("Test.Virus" if b"VIRUS" in data else "", "test")
    result = strip.strip_infected(message, scan_part, eol)
    if result is None:
        return                              # nothing found part by part (encoding hid it): refused whole
    stripped, removed = result
    assert not [m for m in plain_infected if m in stripped]
    assert all(v == "Test.Virus" for _, v in removed)
    # a part its scan found clean is kept byte for byte
    for piece, (_, _, _, bad) in zip(pieces, parts):
        if not bad:
            assert piece.replace(b"\r\n", eol)[len(b"--zz") + len(eol):] in stripped
    # the bytes before the first part and after the last are the sender's
    assert stripped.startswith(message[:message.index(b"--zz")])
    assert stripped.endswith(b"--zz--" + eol)
