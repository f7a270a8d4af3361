"""Property-based tests of attachment blocking's parsers (engine/scan/attachments.py): the
file names a part gives (plain, RFC 2231, RFC 2047), the extension Windows would run a
name as, a zip archive's list of names, and the whole examination. Whatever a sender
gives, the answer is a verdict (never an exception but ValueError from the zip lister),
a shown name fit for a reply line, and a message whose unblocked bytes are the sender's.
How to run a long version: see tests/test_fuzz_parsers.py."""
from __future__ import annotations

import io
import urllib.parse
import zipfile
from types import SimpleNamespace

import pytest
from hypothesis import example, given, strategies as st

from engine.accept import attachments as stage
from engine.imap.mime import Part
from engine.scan import attachment_settings, attachments
from helpers_fuzz import fuzz, in_cpu_time

CFG = SimpleNamespace(**{k: v.default for k, v in attachment_settings.KEYS.items()})
STEM = st.text(st.characters(blacklist_characters="/\\.\0", blacklist_categories=("Cs",)), min_size=1, max_size=30)
EXT = st.sampled_from([".exe", ".js", ".pdf", ".Exe", ".SCR", ".txt", ".zip", ".vbs"])


def fit_for_a_reply(name: str) -> bool:
    return 0 < len(name) <= 100 and name.isascii() and name.isprintable() and '"' not in name and "\\" not in name


@fuzz(500)
@given(st.binary(max_size=400))
@example(b"Content-Type: a/b; name*0*=x''%FF; name*1=\"q\"\r\n\r\n")
@example(b"Content-Disposition: attachment; filename*=bogus-charset''%41.exe\r\n\r\n")
@example(b"Content-Type: x/y; name=\"=?utf-8?q?=ZZ?=\"\r\n\r\n")
@example(b"Content-Type: x/y; name=\"=?x-unknown?b?AAAA?=\"\r\n\r\n")
def test_any_part_header_gives_names_and_a_verdict(raw):
    part = Part(raw, 0, len(raw))
    names = attachments.part_names(part)
    assert all(isinstance(n, str) for n in names)
    verdict = attachments.judge(part, CFG)
    if verdict is not None:
        shown, why = verdict
        assert fit_for_a_reply(shown) and "\n" not in why and "\r" not in why


@fuzz(300)
@example("0", ".js", " ", "", "2231-split")          # "%" ends one section, "20" starts the next
@example("M\u00e4rz", ".exe", "", "", "2231-split")  # one UTF-8 character's octets in two sections
@given(STEM, EXT, st.text(" .", max_size=4), st.sampled_from(["", "dir/", "C:\\x\\", "a.pdf/"]),
       st.sampled_from(["plain", "2231", "2231-split", "2047"]))
def test_the_extension_of_any_encoded_name_is_found(stem, ext, trailing, path, how):
    name = path + stem + ext + trailing
    assert attachments.extension(name) == ext.lower()
    if how == "plain":
        header = 'filename="' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    elif how == "2231":
        header = "filename*=UTF-8''" + urllib.parse.quote(name, safe="")
    elif how == "2231-split":
        q = urllib.parse.quote(name, safe="")
        header = f"filename*0*=UTF-8''{q[:5]}; filename*1*={q[5:]}"
    else:
        import email.header
        header = 'filename="' + email.header.Header(name, "utf-8").encode(maxlinelen=10_000) + '"'
    raw = f"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; {header}\r\n\r\nx".encode()
    if "\r" in name or "\n" in name or '"' in stem and how == "2047":
        return                          # not one header line: another test's business
    names = attachments.part_names(Part(raw, 0, len(raw)))
    assert ext.lower() in {attachments.extension(n) for n in names}, (header, names)


@fuzz(300)
@given(st.binary(max_size=600))
@example(b"PK\x05\x06" + b"\0" * 18)
@example(b"PK\x06\x06" + b"\0" * 28 + b"\xff" * 16 + b"\0" * 8 + b"PK\x06\x07" + b"\0" * 16 + b"PK\x05\x06" + b"\0" * 18)
@example(b"PK\x05\x06" + b"\0" * 6 + b"\xff\xff" + b"\0" * 10)
@example(b"PK\x03\x04PK\x05\x06\0\0\0\0\x01\0\x01\0\x2e\0\0\0\0\0\0\0\0\0")
def test_any_bytes_are_a_list_of_names_or_value_error(data):
    try:
        names, encrypted = in_cpu_time(2, attachments.zip_names, data, 50)
    except ValueError:
        return
    assert len(names) <= 50 and isinstance(encrypted, bool)


@fuzz(200)
@given(st.lists(st.tuples(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                                  min_size=1, max_size=40), st.binary(max_size=20)),
                max_size=20, unique_by=lambda t: t[0]),
       st.binary(max_size=30), st.integers(0, 40))
def test_a_real_archive_lists_its_names_and_a_damaged_one_is_value_error(files, junk, cut):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files:
            z.writestr(name, data)
    good = out.getvalue()
    names, encrypted = attachments.zip_names(junk.replace(b"PK", b"") + good, 1000)   # data before it is allowed
    assert names == [zipfile.ZipInfo(n).filename for n, _ in files] and not encrypted
    if cut:
        with pytest.raises(ValueError):
            attachments.zip_names(good[:-cut], 1000)
    assert attachments.zip_names(good, len(files) or 1)[0] == names
    if len(files) > 1:
        with pytest.raises(ValueError):             # past max_entries
            attachments.zip_names(good, len(files) - 1)


@fuzz(200)
@given(st.lists(st.tuples(st.sampled_from(["a.exe", "b.pdf", "c.js", "d.txt", "e.zip"]),
                          st.sampled_from(["application/octet-stream", "application/x-msdownload", "text/plain"]),
                          st.binary(max_size=40)), max_size=8),
       st.binary(max_size=40), st.sampled_from([b"\r\n", b"\n"]))
def test_examination_keeps_every_unblocked_byte(parts, preamble, eol):
    pieces = [b"--zz\r\nContent-Type: %s; name=\"%s\"\r\n\r\n" % (t.encode(), n.encode())
              + body.replace(b"\r", b"").replace(b"\n", b"").replace(b"--", b"").replace(b"PK", b"") + b"\r\n"
              for n, t, body in parts]
    message = (b"Subject: s\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
               + preamble.replace(b"--", b"").replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
               + b"".join(pieces) + b"--zz--\r\n").replace(b"\r\n", eol)
    found = stage.examine(CFG, message, eol)
    assert found is not None
    new, removed = found
    assert new is not None
    blocked = [p for p, (n, t, _) in zip(pieces, parts)
               if n.endswith((".exe", ".js")) or t == "application/x-msdownload"
               or (n == "e.zip" and t != "text/plain")]       # not a zip: unreadable_zip = "remove"
    assert len(removed) == len(blocked)
    if not removed:
        assert new == message
    for piece in pieces:
        if piece not in blocked:
            assert piece.replace(b"\r\n", eol)[len(b"--zz") + len(eol):] in new
    assert new.startswith(message[:message.index(b"--zz")]) and new.endswith(b"--zz--" + eol)


def test_rfc2231_sections_are_joined_before_decoding_and_plain_ones_stay_literal():
    assert attachments.rfc2231_values([("filename*0*", "UTF-8''M%C3"), ("filename*1*", "%A4rz.exe")]) == ["März.exe"]
    assert attachments.rfc2231_values([("name*0", "a%41"), ("name*1*", "%2Eexe")]) == ["a%41.exe"]
    assert attachments.rfc2231_values([("filename*1", "b.exe"), ("filename*0", "a")]) == ["ab.exe"]
