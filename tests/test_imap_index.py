"""The per-folder metadata index (engine/imap/index.py): same answers as parsing the
message, rebuilt when damaged, safe with several writers, never the source of truth."""
from __future__ import annotations

import multiprocessing
import os

import pytest

from engine.imap import index as indexmod
from engine.imap import mime
from engine.imap.response import encode
from engine.maildir import Maildir, to_crlf
from engine.root import Root
from helpers_mail import PASSWORD, box, imap, mailserver, user  # noqa: F401 - pytest fixtures, used as test arguments

TRICKY = (b"Received: from x\n\tby y\n"
          b"From: \"Dave, D.\" <dave@example.org>\n"
          b"To: alice@example.com,\n \"Bob B\" <bob@example.com>\n"
          b"Subject: =?utf-8?q?caf=C3=A9?= report\n"
          b"X-Other: not indexed\n"
          b"Subject: second subject\n"
          b"Date: Tue, 03 Jan 2023 11:00:00 +0100\n"
          b"Message-ID: <t1@example.org>\n"
          b"In-Reply-To: <t0@example.org>\n"
          b"Content-Type: text/plain; charset=utf-8\n\nbody xyzzy\n")


@pytest.fixture
def folder(tmp_path):
    md = Maildir.for_account(Root(tmp_path), "example.test", "alice")
    md.create()
    return md, md.folder("INBOX")


def _fill(md, n, start=0):
    for i in range(start, start + n):
        md.deliver(f"From: u{i}@example.org\nTo: alice@example.test\nSubject: message {i}\n"
                   f"Date: Mon, 02 Jan 2023 10:00:00 +0000\n\nbody {i}\n".encode())


def _forget_memory():
    indexmod._INDEXES.clear()


def test_entry_matches_direct_parsing(folder):
    md, inbox = folder
    md.deliver(TRICKY)
    msg = inbox.sync()[0]
    assert indexmod.lookup(inbox, [msg])[msg.base].envelope is None  # made on first need
    entries = indexmod.lookup(inbox, [msg], envelope=True)
    entry = entries[msg.base]
    full = to_crlf(inbox.read(msg))
    root = mime.Part(full, 0, len(full))
    assert entry.envelope == encode(mime.envelope(root))
    for fields in (["FROM", "SUBJECT", "DATE"], ["To", "Cc", "Message-ID", "In-Reply-To", "Content-Type"],
                   ["subject"], ["Date", "From", "To"]):
        assert mime.section_bytes(entry.part(), [], "HEADER.FIELDS", fields) == \
            mime.section_bytes(root, [], "HEADER.FIELDS", fields) == \
            indexmod.select_fields(entry.fields, fields)
    assert b"X-Other" not in entry.fields and b"Received" not in entry.fields
    for name in ("subject", "to", "from", "date", "cc"):  # what SEARCH compares
        assert indexmod._values(entry.fields, name.encode()) == [v for k, v in root.headers if k == name]
    # A fresh process reads the same entry back from the file.
    _forget_memory()
    assert indexmod.lookup(inbox, [msg])[msg.base] == entry
    assert (inbox.path / indexmod.FILENAME).is_file()


def test_damaged_index_is_ignored_and_rebuilt(folder):
    md, inbox = folder
    _fill(md, 5)
    msgs = inbox.sync()
    good = indexmod.lookup(inbox, msgs)
    path = inbox.path / indexmod.FILENAME
    for damage in (b"garbage" * 50, None, "flip", "truncate"):
        _forget_memory()
        data = path.read_bytes()
        if damage is None:
            path.unlink()
        elif damage == "flip":
            mid = len(data) // 2
            path.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:])
        elif damage == "truncate":
            path.write_bytes(data[:-7])
        else:
            path.write_bytes(damage)
        assert indexmod.lookup(inbox, msgs) == good
        _forget_memory()
        idx = indexmod.for_folder(inbox.path)
        idx.refresh()
        assert not idx.damaged and idx.entries == good  # the rewrite is whole again


def test_stale_entries_of_expunged_messages_are_dropped(folder):
    md, inbox = folder
    _fill(md, 8)
    msgs = inbox.sync()
    indexmod.lookup(inbox, msgs, complete=True)
    inbox.expunge(msgs[:4])
    left = inbox.sync()
    indexmod.lookup(inbox, left, complete=True)
    _forget_memory()
    idx = indexmod.for_folder(inbox.path)
    idx.refresh()
    assert set(idx.entries) == {m.base for m in left}


def _writer(path_str, start, count):
    md = Maildir.for_account(Root(path_str), "example.test", "alice")
    inbox = md.folder("INBOX")
    msgs = inbox.sync()
    indexmod._INDEXES.clear()
    for i in range(start, len(msgs), 3):  # each writer appends its own share, one at a time
        indexmod.lookup(inbox, [msgs[i]])
        indexmod.lookup(inbox, [msgs[i]], envelope=True)  # the upgraded record replaces it


def test_concurrent_writers_keep_the_file_readable(folder, tmp_path):
    md, inbox = folder
    _fill(md, 30)
    msgs = inbox.sync()
    indexmod.lookup(inbox, msgs[:1])  # the file exists: every writer appends
    _forget_memory()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), k, 30)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    _forget_memory()
    idx = indexmod.for_folder(inbox.path)
    idx.refresh()
    assert not idx.damaged
    assert set(idx.entries) == {m.base for m in msgs}
    for m in msgs:
        direct = indexmod.entry_from_header(to_crlf(inbox.read(m).split(b"\n\n")[0] + b"\n\n"))
        assert idx.entries[m.base] == direct


def test_imap_answers_from_index_match_the_messages(mailserver, user):
    md = box(mailserver, user)
    md.deliver(TRICKY)
    _fill(md, 3)
    c = imap(mailserver, user)
    c.select("INBOX")
    typ, data = c.uid("SEARCH", None, "SUBJECT", "report")
    assert typ == "OK" and len(data[0].split()) == 1
    assert c.uid("SEARCH", None, "SUBJECT", "second")[1][0] == data[0]
    assert c.uid("SEARCH", None, "FROM", "u2@example.org")[1][0].split() != []
    assert c.uid("SEARCH", None, "HEADER", "X-Other", "indexed")[1][0] == data[0]
    assert c.search(None, "SENTON", "3-Jan-2023")[1][0] == b"1"
    typ, env = c.fetch("1", "(ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT TO)])")
    assert b'"=?utf-8?q?caf=C3=A9?= report"' in env[0][0]
    assert env[0][1] == (b"To: alice@example.com,\r\n \"Bob B\" <bob@example.com>\r\n"
                         b"Subject: =?utf-8?q?caf=C3=A9?= report\r\nSubject: second subject\r\n\r\n")
    # Not covered by the index: read from the message itself.
    typ, other = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (X-OTHER)])")
    assert other[0][1] == b"X-Other: not indexed\r\n\r\n"
    folder = md.folder("INBOX")
    assert (folder.path / indexmod.FILENAME).is_file()
    # The index is never the truth: removing it changes no answer.
    os.unlink(folder.path / indexmod.FILENAME)
    _forget_memory()
    assert c.fetch("1", "(ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT TO)])")[1] == env
    c.logout()


@pytest.mark.parametrize("header", [
    TRICKY,
    b"To: undisclosed-recipients:;\nCc: team: a@b.example, \"C\\\\q\" <c@d.example>;\n\n",
    b"Subject: only a subject\n\n",
    b"From: <>\nSender: s@x.example\nReply-To: (comment) r@y.example\nBcc: ,\n\n",
    b"\n",
    b"\x0bSubject: odd\nFrom: a@b\r\r\n \x0c folded\nTo:\n\n",
    b" leading: continuation\nSubject: s\nstray line\n folded subject? no, stray's\nTo: t@x\n\n",
    b"Subject: s\nTo: t@x\n\tfolded\nstray\n\tmore to\nFrom: f@x",
])
def test_envelope_encoding_matches_the_general_encoder(header):
    data = to_crlf(header)
    entry = indexmod.entry_from_header(data)
    root = mime.Part(data, 0, len(data))
    assert entry.envelope == encode(mime.envelope(root))
    names = ["From", "To", "Cc", "Subject", "Date", "Message-ID"]
    assert indexmod.select_fields(entry.fields, names) == mime.section_bytes(root, [], "HEADER.FIELDS", names)
    assert entry.fields in (mime.section_bytes(root, [], "HEADER.FIELDS", sorted(indexmod.INDEXED)), data)
    for name in ("subject", "to", "from"):
        assert indexmod._values(entry.fields, name.encode()) == [v for k, v in root.headers if k == name]


def test_entry_too_large_for_the_file_stays_in_memory_only(folder):
    md, inbox = folder
    md.deliver(b"Subject: big\nX-Pad: x\nReferences: " + b"<a@b> " * 200_000 + b"\n\nbody\n")
    _fill(md, 2)
    msgs = inbox.sync()
    first = indexmod.lookup(inbox, msgs)
    assert len(first) == 3
    _forget_memory()
    idx = indexmod.for_folder(inbox.path)
    idx.refresh()
    assert not idx.damaged and len(idx.entries) == 2  # the file holds the others, undamaged
    assert indexmod.lookup(inbox, msgs) == first


def test_subject_text_and_plainness_are_kept_in_the_file(folder):
    from engine.imap.search import decode_header_text
    md, inbox = folder
    md.deliver(TRICKY)
    md.deliver(b"From: a@b.example\nstray line\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= ODD\n\nbody\n")
    md.deliver(b"From: a@b.example\n\nno subject at all\n")
    msgs = inbox.sync()
    entries = indexmod.lookup(inbox, msgs)
    for msg in msgs:
        full = to_crlf(inbox.read(msg))
        root = mime.Part(full, 0, len(full))
        values = [decode_header_text(v) for k, v in root.headers if k == "subject"]
        entry = entries[msg.base]
        assert entry.subject == ("\0".join(values) if values else None)
        assert entry.plain == indexmod._plain(root.header_bytes())
    assert [entries[m.base].plain for m in msgs] == [True, False, True]
    assert entries[msgs[1].base].subject == "grüsse odd"  # casefolded
    _forget_memory()  # a fresh process reads them back, without working them out again
    assert indexmod.lookup(inbox, msgs) == entries


def test_index_of_an_older_version_is_rebuilt(folder):
    md, inbox = folder
    _fill(md, 3)
    msgs = inbox.sync()
    good = indexmod.lookup(inbox, msgs)
    path = inbox.path / indexmod.FILENAME
    path.write_bytes(b"mailctl-index 1\n" + path.read_bytes()[len(indexmod.MAGIC):])
    _forget_memory()
    assert indexmod.lookup(inbox, msgs) == good
    _forget_memory()
    _fill(md, 1, start=3)  # the next write replaces the old file
    assert len(indexmod.lookup(inbox, inbox.sync())) == 4
    assert path.read_bytes().startswith(indexmod.MAGIC)


def test_fast_encoded_word_decoding_matches_the_general_decoder():
    import base64
    import email.header
    import random
    from engine.imap.search import decode_header_text

    def general(text):
        try:
            return str(email.header.make_header(email.header.decode_header(text))).casefold()
        except Exception:
            return text.casefold()
    cases = ["=?UTF-8?B?w5xiZXJibGljazogeA==?=", "=?utf-8?q?caf=C3=A9_report?=", "=?utf-8?q?a?= =?utf-8?q?b?=",
             "=?UTF-8?B?!!!?=", "=?utf-8?b?/w==?=", "=?us-ascii?Q?plain=20text?=", "=?UTF-8?B??=",
             "=?utf-8?B?w5x?=", "=?utf-8?q?a=?=", "=?UTF-8?Q?_x_?=", "=?utf-8?q?=zz?=", "=?us-ascii?b?w5w=?=",
             "=?ISO-8859-1?Q?Gr=FC=DFe?=", "Re: =?utf-8?q?caf=C3=A9?="]
    rng = random.Random(5)
    for _ in range(500):
        text = "".join(rng.choice("aÜé€ _=?x\t") for _ in range(rng.randint(0, 12)))
        for charset in ("UTF-8", "us-ascii"):
            cases.append(f"=?{charset}?B?{base64.b64encode(text.encode()).decode()}?=")
            cases.append(f"=?{charset}?q?" + "".join(
                c if c.isascii() and c not in "=?_ \t" else "".join(f"={b:02X}" for b in c.encode())
                for c in text) + "?=")
        cases.append("=?utf-8?q?" + "".join(rng.choice("ab=_3F") for _ in range(rng.randint(0, 8))) + "?=")
        cases.append("=?utf-8?b?" + "".join(rng.choice("w5xAB=/+") for _ in range(rng.randint(0, 8))) + "?=")
    assert [decode_header_text(c.encode()) for c in cases] == [general(c) for c in cases]


def test_envelopes_from_remembered_address_encodings_equal_parsed_ones():
    """An entry's ENVELOPE takes each address field's encoding from a cache by value;
    it must equal the ENVELOPE parsed afresh, however the values repeat and mix."""
    idx_mod = indexmod
    values = [b"Ann Example <ann@example.org>", b"Ann Example <ann@example.com>", b"<bob@example.net>",
              b"<bob@example.net>, <carol@example.net>", b'"Quoted, Name" <q@x.y>',
              b"group: a@b, c@d;, e@f", b"(comment) x@y", b"undisclosed-recipients:;", b"", b",,,",
              b"plain", b"=?UTF-8?B?w5xiZXI=?= <u@x.y>"]
    idx_mod._ADDRESSES.clear()
    for i in range(60):
        fields = b""
        for j, name in enumerate((b"From", b"Sender", b"Reply-To", b"To", b"Cc", b"Bcc")):
            k = (i * 7 + j * 3) % (len(values) + 2)
            if k < len(values):
                fields += name + b": " + values[k] + b"\r\n"
        fields += b"Subject: s%d\r\nMessage-ID: <%d@x>\r\n\r\n" % (i, i)
        fresh = idx_mod.encode_envelope(mime.envelope(mime.Part(fields, 0, len(fields))))
        assert idx_mod._envelope_of(fields) == fresh
    assert idx_mod._ADDRESSES        # values were remembered, and answered from above


ODD_HEADERS = [
    b"Subject: first line\r\nSubjects: not it\r\nsubject2: nor this\r\nFROM :  a@b\r\n\r\n",
    b"To: a,\r\n b,\r\n\tc\r\nX-Other: y\r\nDate:\r\nCc:x\r\n\r\n",
    b"stray line first\r\nFrom: a@b\r\nSubject: s\r\n\r\n",
    b"From: a@b\r\nstray line\r\nSubject: s\r\n\r\n",
    b"From: a@b\r\nSubject: lone\rcr\r\n\r\n",
    b"X-Only: nothing indexed\r\n\r\n",
    b"\r\n",
]


@pytest.mark.parametrize("header", ODD_HEADERS)
def test_fields_and_texts_from_odd_headers_match_the_parser(header):
    """select_fields and field_text find each field by the LF before it (a fast scan):
    the same fields, in message order, as the general header parser gives."""
    part = mime.Part(header, 0, len(header))
    entry = indexmod.entry_from_header(header)
    for names in (("FROM", "SUBJECT", "DATE"), ("To", "Cc"), ("subject",), ("x-other", "date")):
        expected = mime.section_bytes(part, [], "HEADER.FIELDS", list(names))
        assert indexmod.select_fields(header, names) == expected
        if indexmod.covers(names):
            assert indexmod.select_fields(entry.fields, names, entry.plain) == expected
    subjects = [v for k, v in part.headers if k == "subject"]
    assert (entry.subject is None) == (not subjects)
