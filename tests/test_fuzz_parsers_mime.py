"""Property-based tests of the MIME parser and BODYSTRUCTURE (engine/imap/mime.py,
engine/imap/fetch.py, engine/imap/response.py), issue 19: for generated messages
(multipart nesting, message/rfc822 past the depth limit, odd boundaries, bad charsets,
missing headers, CRLF/LF mixes) every part's reported octet count equals the bytes
BODY[part] returns, line counts match, and the BODYSTRUCTURE the server sends parses
with imapclient's strict response parser. How to run a long version: see
tests/test_fuzz_parsers.py.
"""
from __future__ import annotations

import base64
from types import SimpleNamespace

from hypothesis import assume, example, given, strategies as st
from imapclient.response_parser import parse_fetch_response
from imapclient.response_types import BodyData

from engine.imap import fetch, mime, transfer
from engine.imap.parser import Atom
from engine.maildir import to_crlf
from helpers_fuzz import fuzz, imaplib_chunks, in_cpu_time

CHARSETS = [None, "utf-8", "US-ASCII", "iso-8859-1", "idna", "undefined", "punycode", "base64",
            "x-\0bad", "utf-7", "rot13", "", "a" * 100, '"quoted"', "utf-8; format=flowed"]
LEAF_TYPES = ["text/plain", "TEXT/HTML", "application/octet-stream", "image/png", "text", "bogus/",
              "/x", "message/delivery-status", "message/global", None]
ENCODINGS = [None, "7bit", "8bit", "base64", "quoted-printable", "x-unknown", "BINARY"]
# boundaries that need quoting, hold spaces or look like other syntax
BOUNDARY = st.text("abZ09'()+_,-./:=? ", min_size=1, max_size=20).filter(lambda b: b.strip())
LINES = st.lists(st.one_of(st.text("abc =?.-\t\u00e9", max_size=20), st.sampled_from(["", ".", "--", "--x--"])),
                 max_size=6)


def header_line(name: str, value: str) -> str:
    return f"{name}: {value}"


@st.composite
def leaf(draw):
    headers = []
    ctype = draw(st.sampled_from(LEAF_TYPES))
    if ctype is not None:
        charset = draw(st.sampled_from(CHARSETS))
        value = ctype if charset is None else f'{ctype}; charset="{charset}"'
        headers.append(header_line("Content-Type", value))
    enc = draw(st.sampled_from(ENCODINGS))
    if enc:
        headers.append(header_line("Content-Transfer-Encoding", enc))
    if draw(st.booleans()):
        headers.append(header_line("Content-Disposition", draw(st.sampled_from(
            ["attachment; filename=a.txt", "inline", "", ";;", 'attachment; filename="x\\"y"']))))
    return ("leaf", headers, draw(LINES))


@st.composite
def multipart(draw, children):
    boundary = draw(BOUNDARY)
    subtype = draw(st.sampled_from(["mixed", "alternative", "digest", "related", "X-ODD"]))
    quoted = '"' + boundary + '"' if draw(st.booleans()) or " " in boundary else boundary
    headers = [header_line("Content-Type", f"multipart/{subtype}; boundary={quoted}")]
    return ("multi", headers, boundary, draw(st.lists(children, min_size=0, max_size=3)),
            draw(LINES), draw(LINES), draw(st.booleans()))


@st.composite
def enclosed(draw, children):
    kind = draw(st.sampled_from(["message/rfc822", "message/global", "MESSAGE/RFC822"]))
    return ("message", [header_line("Content-Type", kind)], draw(top_headers()), draw(children))


def top_headers():
    fields = st.sampled_from([("From", "a@example.org"), ("From", '"Q \\" x" <q@x>, (c) b@y'),
                              ("To", "group: a@b, c@d;"), ("Subject", "=?idna?q?x?= hi"),
                              ("Date", "not a date"), ("Message-ID", "<x@y>"), ("Cc", ""), ("X-Odd", "a\tb")])
    return st.lists(fields.map(lambda f: header_line(*f)), max_size=4)


def entities():
    return st.recursive(leaf(), lambda inner: st.one_of(multipart(inner), enclosed(inner)), max_leaves=8)


def render(entity, eol) -> list[str]:
    """The lines of an entity (its header, a blank line, its body)."""
    kind, headers = entity[0], entity[1]
    if kind == "leaf":
        body = entity[2]
    elif kind == "message":
        body = render_message(entity[2], entity[3], eol)
    else:
        _, _, boundary, children, preamble, epilogue, closed = entity
        body = list(preamble)
        for child in children:
            body += ["--" + boundary] + render(child, eol)
        if closed:
            body += ["--" + boundary + "--"] + list(epilogue)
    return list(headers) + [""] + body


def render_message(headers, entity, eol) -> list[str]:
    lines = render(entity, eol)
    blank = lines.index("")
    return list(headers) + lines[:blank] + lines[blank:]


def join(lines: list[str], eols: list[str]) -> bytes:
    return b"".join(line.encode("utf-8") + eols[i % len(eols)].encode() for i, line in enumerate(lines))


def served(raw: bytes) -> bytes:
    """The message as IMAP serves it (the stored file with every LF as CRLF)."""
    return to_crlf(raw)


def fetched(data: bytes, names: list[str]) -> dict:
    """FETCH of those items, rendered as the server does and parsed by imapclient."""
    msg = SimpleNamespace(uid=7, size=len(data), internaldate=0)
    items = fetch.parse_items([Atom(n) for n in names])
    response = b"1 " + in_cpu_time(2.0, fetch.render, msg, items, data, "()")
    return parse_fetch_response(imaplib_chunks(response))[1]


def walk(structure, numbers: list[int], out: list) -> None:
    """(part numbers, body structure) of every part, numbered as RFC 3501 §6.4.5 says:
    a multipart's parts are .1, .2 ...; a message/rfc822's body is .1 unless it is a
    multipart, whose parts are then numbered as its own."""
    if structure.is_multipart:
        for i, child in enumerate(structure[0], 1):
            walk(child, numbers + [i], out)
        return
    here = numbers or [1]
    out.append((here, structure))
    if structure[:2] == (b"MESSAGE", b"RFC822"):
        inner = BodyData.create(structure[8])     # imapclient leaves an enclosed body a tuple
        walk(inner, here if inner.is_multipart else here + [1], out)


def check_structure(raw: bytes) -> None:
    data = served(raw)
    answer = fetched(data, ["BODYSTRUCTURE", "BODY"])
    parts: list = []
    walk(answer[b"BODYSTRUCTURE"], [], parts)
    assert parts
    section_names = [f"BODY.PEEK[{'.'.join(map(str, n))}]" for n, _ in parts]
    for start in range(0, len(section_names), 20):
        bodies = fetched(data, section_names[start:start + 20])
        for name, (numbers, structure) in zip(section_names[start:start + 20], parts[start:start + 20]):
            content = bodies[name.replace(".PEEK", "").encode()] or b""
            assert structure[6] == len(content), (numbers, structure[:7])
            if structure[0] == b"TEXT":
                assert structure[7] == content.count(b"\r\n"), numbers
            elif structure[:2] == (b"MESSAGE", b"RFC822"):
                assert structure[9] == content.count(b"\r\n"), numbers
    # a NUL goes out as 0x80: no {n} literal may hold one (RFC 3501 §4.3)
    assert fetched(data, ["RFC822.SIZE", "BODY.PEEK[]"])[b"BODY[]"] == data.replace(b"\0", b"\x80")


@fuzz(150)
@given(entities(), top_headers(), st.sampled_from([["\r\n"], ["\n"], ["\r\n", "\n"], ["\n", "\n", "\r\n"]]))
@example(("message", ["Content-Type: message/rfc822"], [], ("leaf", ["Content-Type: text/plain"], [])),
         [], ["\r\n"])          # a top-level message/rfc822: its enclosed body is BODY[1.1]
def test_generated_messages_have_exact_octets_and_lines(entity, headers, eols):
    check_structure(join(render_message(headers, entity, eols), eols))


@fuzz(150)
@given(st.binary(max_size=400), st.sampled_from([b"", b"Content-Type: multipart/mixed; boundary=x\r\n\r\n",
                                                   b"Content-Type: message/rfc822\r\n\r\n"]))
@example(b"\0", b"Content-Type: message/rfc822\r\n\r\n")
@example(b"--x\r\n\r\n--x--", b"Content-Type: multipart/mixed; boundary=x\r\n\r\n")
@example(b"\r\n--x", b"Content-Type: multipart/mixed; boundary=x\r\n\r\n")
def test_random_bytes_after_a_header_have_exact_octets(body, header):
    check_structure(header + body)


@st.composite
def plain_trees(draw, depth=0):
    """("leaf", lines) or ("multi", boundary, children): bodies that hold no boundary
    line, and boundaries none of which starts another, so each part's bytes are known."""
    if depth >= 3 or draw(st.booleans()):
        return ("leaf", draw(st.lists(st.text("abc =.\t\u00e9", max_size=12), max_size=4)))
    boundary = f"={draw(st.integers(0, 10**6))}.{depth}=" + draw(BOUNDARY).strip()
    return ("multi", boundary, draw(st.lists(plain_trees(depth + 1), min_size=1, max_size=3)))


def plain_lines(tree, numbers: list[int], expected: dict) -> list[str]:
    if tree[0] == "leaf":
        # the CRLF that ends a part's last line belongs to the boundary line after it
        body = "\r\n".join(tree[1]) if numbers else "".join(line + "\r\n" for line in tree[1])
        expected[tuple(numbers or [1])] = body.encode()
        return ["Content-Type: text/plain", ""] + tree[1]
    _, boundary, children = tree
    lines = [f'Content-Type: multipart/mixed; boundary="{boundary}"', ""]
    for i, child in enumerate(children, 1):
        lines += ["--" + boundary] + plain_lines(child, numbers + [i], expected)
    return lines + ["--" + boundary + "--"]


@fuzz(100)
@given(plain_trees(), st.sampled_from(["\r\n", "\n"]))
def test_every_part_is_exactly_its_own_bytes(tree, eol):
    """The CRLF before a boundary line belongs to the boundary (RFC 2046 §5.1.1)."""
    expected: dict = {}
    data = served(join(["Subject: parts"] + plain_lines(tree, [], expected), [eol]))
    names = {numbers: f"BODY.PEEK[{'.'.join(map(str, numbers))}]" for numbers in expected}
    bodies = fetched(data, list(names.values()))
    for numbers, name in names.items():
        assert bodies[name.replace(".PEEK", "").encode()] == expected[numbers], numbers


def nested(depth: int, inner: bytes) -> bytes:
    message = inner
    for level in range(depth):
        message = b"Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n" % level + message
    return message


@fuzz(15)
@given(st.integers(mime.MAX_PARTS_DEPTH - 3, mime.MAX_PARTS_DEPTH + 5),
       st.sampled_from([b"Subject: x\r\n\r\ntext\r\n", b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
                        b"--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\n", b"no header at all"]))
def test_message_rfc822_nested_past_the_depth_limit_is_well_formed(depth, inner):
    check_structure(nested(depth, inner))


def test_a_multipart_past_the_part_budget_is_well_formed():
    parts = b"".join(b"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n"
                     for _ in range(mime.MAX_PARTS // 2 + 10))
    check_structure(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n")


# -- transfer encodings (engine/imap/transfer.py): BINARY and literal8 APPEND ---------

def qp_encode(data: bytes, width: int, pads: list[bytes], hard_breaks: bool) -> bytes:
    """RFC 2045 quoted-printable, written as loosely as the RFC lets a sender: soft breaks
    followed by white space, white space added before hard breaks (a decoder drops both)."""
    out, line, i, n = bytearray(), bytearray(), 0, 0
    while i < len(data):
        if hard_breaks and data[i:i + 2] == b"\r\n":
            out += line + pads[n % len(pads)] + b"\r\n"
            line, i, n = bytearray(), i + 2, n + 1
            continue
        b = data[i]
        token = bytes([b]) if 33 <= b <= 126 and b != 61 else b"=%02X" % b
        if len(line) + len(token) > width:
            out += line + b"=" + pads[n % len(pads)] + b"\r\n"
            line, n = bytearray(), n + 1
        line += token
        i += 1
    return bytes(out + line)


@fuzz(300)
@given(st.binary(max_size=300), st.integers(4, 76), st.lists(st.sampled_from([b"", b" ", b"\t", b" \t "]), min_size=1),
       st.booleans())
@example(b"a \r\nb", 76, [b"  "], True)
@example(b"x" * 80 + b"=", 76, [b" "], False)
def test_quoted_printable_decodes_what_was_encoded(data, width, pads, hard_breaks):
    encoded = qp_encode(data, width, pads, hard_breaks)
    assert transfer.decode_quoted_printable(encoded) == data


BINARY_HEADERS = [b"Content-Transfer-Encoding: binary\r\n", b"Content-Transfer-Encoding: 8bit\r\n", b"",
                  b"Content-Type: application/octet-stream\r\ncontent-transfer-encoding:\r\n BINARY\r\n"]


@fuzz(200)
@given(st.binary(max_size=300), st.sampled_from(BINARY_HEADERS), st.booleans())
@example(b"a\nb\0c\rd", BINARY_HEADERS[0], True)
@example(b"ends in CR\r", BINARY_HEADERS[2], False)
def test_literal8_message_stored_as_lines_gives_its_bytes_back(blob, header, multipart):
    """APPEND of a literal8: what is stored (LF lines on disk, CRLF when served) holds no
    NUL, and BINARY of the part gives back exactly the bytes appended."""
    assume(b"--b" not in blob)
    part = header + b"\r\n" + blob
    if multipart:
        message = (b'Subject: x\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
                   b"Content-Type: text/plain\r\n\r\ntext\r\n--b\r\n" + part + b"\r\n--b--\r\n")
    else:
        message = b"Subject: x\r\n" + part
    stored = transfer.storable(message).replace(b"\r\n", b"\n")
    assert b"\0" not in stored
    served = to_crlf(stored)
    root = mime.Part(served, 0, len(served))
    found = mime.find_part(root, [2] if multipart else [1])
    assert transfer.decoded(found, with_header=False) == blob
    if multipart:
        assert transfer.decoded(root, with_header=False).count(b"--b") == 3


@fuzz(200)
@given(st.binary(max_size=300), st.sampled_from([b"\r\n", b"\n", b" \r\n"]), st.integers(1, 80))
def test_base64_decodes_what_was_encoded(data, eol, width):
    text = base64.b64encode(data)
    encoded = eol.join(text[i:i + width] for i in range(0, len(text), width)) + eol
    assert transfer.decode_base64(encoded) == data


def test_hostile_bodies_take_linear_time():
    """A body of spaces for quoted-printable, lines that start like a boundary: each costs
    a pass, not a pass per byte or per line."""
    assert in_cpu_time(1.0, transfer.decode_quoted_printable, b" " * 2_000_000 + b"x") == b" " * 2_000_000 + b"x"
    for junk in (b"--b1" * 500_000, b"--bx\r\n" * 300_000):
        data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + junk + b"\r\n--b\r\n\r\nx\r\n--b--\r\n"
        root = mime.Part(data, 0, len(data))
        assert in_cpu_time(1.0, lambda r=root: len(r.children)) == 1
