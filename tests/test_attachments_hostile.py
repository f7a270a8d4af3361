"""Attachment blocking against hostile input, with a real server: a zip of 100,000 entries,
a zip whose end record lies about its size, a corrupt zip, an encrypted one, a 10,000-part
message, file names with control characters, path separators or 5,000 characters. Each
has one clear outcome (kept, replaced or refused), the server answers quickly and goes on
serving, and nothing accepted is lost; two serving processes count what they did."""
from __future__ import annotations

import io
import smtplib
import struct
import time
import zipfile

import pytest

from engine.scan import attachments
from helpers_clamav import zipped
from helpers_fuzz import in_cpu_time
from helpers_mailauth import send
from helpers_server import running_server, serve_process, serve_status, wait_for_processes
from test_attachments import BOB, BLOCKED, assert_replaced, message, part, raw_delivered, the_root


def many_entries(n: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for i in range(n):
            z.writestr(f"f{i}.txt", b"")
    return out.getvalue()


def understated(data: bytes) -> bytes:
    """The archive with its end record claiming one entry and a tiny central directory
    (its zip64 end record, which zipfile reads instead, still telling the truth)."""
    at = data.rfind(b"PK\x05\x06")
    fields = list(struct.unpack("<4s4H2LH", data[at:at + 22]))
    fields[3] = fields[4] = 1
    fields[5] = 46
    return data[:at] + struct.pack("<4s4H2LH", *fields) + data[at + 22:]


def encrypted(data: bytes) -> bytes:
    """The archive with every entry flagged encrypted (bit 0 of its flags), as a password
    zip is: its names are still in the clear."""
    out = bytearray(data)
    for sig, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = out.find(sig)
        while at >= 0:
            out[at + flags_at] |= 1
            at = out.find(sig, at + 4)
    return bytes(out)


BIG_ZIP = many_entries(100_000)
UNREADABLE = {
    "100000-entries": (BIG_ZIP, "the archive could not be examined (more than 1000 entries)"),
    "lying-end-record": (understated(BIG_ZIP), "the archive could not be examined (more than 1000 entries)"),
    "corrupt": (b"PK\x03\x04" + bytes(range(256)) * 4, "the archive could not be examined (no zip end record)"),
    "truncated": (zipped({"a.txt": b"x" * 1000, "b.exe": b"MZ"})[:-30], None),
}


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
@pytest.mark.parametrize("unreadable", ["remove", "keep"])
def test_an_archive_that_cannot_be_listed_is_removed_or_kept_as_configured(tmp_path, kind, unreadable):
    data, why = UNREADABLE[kind]
    attachment = part(data, 'filename="files.zip"', "application/zip")
    root = the_root(tmp_path, attachments__unreadable_zip=unreadable)
    with running_server(root) as srv:
        started = time.monotonic()
        assert send(srv, "alice@far.example", message(attachment))[0] == 250
        assert time.monotonic() - started < 20
        assert send(srv, "alice@far.example", message(b"--b-1\r\n\r\nnext"))[0] == 250     # still serving
    raw, after = raw_delivered(root)
    if unreadable == "keep":
        assert raw.endswith(message(attachment))
    elif why is not None:
        assert_replaced(raw, attachment, "files.zip", why)
    else:
        assert b"the archive could not be examined" in raw and not raw.endswith(message(attachment))
    assert after.endswith(message(b"--b-1\r\n\r\nnext"))


@pytest.mark.parametrize("setting", ["keep", "remove"])
def test_an_encrypted_zip_has_its_names_checked_and_is_kept_or_removed(tmp_path, setting):
    clean = part(encrypted(zipped({"secret.pdf": b"%PDF"})), 'filename="locked.zip"', "application/zip")
    bad = part(encrypted(zipped({"secret.pdf.exe": b"MZ"})), 'filename="bad.zip"', "application/zip")
    root = the_root(tmp_path, attachments__encrypted_zip=setting)
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", message(clean))[0] == 250
        assert send(srv, "alice@far.example", message(bad))[0] == 250
    first, second = raw_delivered(root)
    if setting == "keep":
        assert first.endswith(message(clean))
    else:
        assert_replaced(first, clean, "locked.zip", "it is an encrypted archive, which cannot be examined")
    assert_replaced(second, bad, "bad.zip", "it holds secret.pdf.exe, and files of type .exe are not accepted")


def many_parts(n: int, last: bytes) -> bytes:
    body = b"".join(b"--b-1\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(n - 1))
    return message(body + last)


@pytest.mark.parametrize("max_parts", [1000, 20000])
def test_a_10000_part_message_is_refused_over_max_parts_else_examined_to_the_last_part(tmp_path, max_parts):
    sent = many_parts(10_000, BLOCKED["exe"][0])
    root = the_root(tmp_path, attachments__max_parts=max_parts)
    with running_server(root) as srv:
        started = time.monotonic()
        code, text = send(srv, "alice@far.example", sent)
        assert time.monotonic() - started < 30
        assert send(srv, "alice@far.example", message(b"--b-1\r\n\r\nnext"))[0] == 250
    if max_parts == 1000:
        assert (code, text) == (554, "5.7.1 Rejected: too many MIME parts to examine the attachments")
        [after] = raw_delivered(root)
    else:
        assert code == 250
        raw, after = raw_delivered(root)
        assert b'filename="setup.exe.txt"' in raw and raw.count(b"\r\n--b-1\r\n") == 10_002
    assert after.endswith(message(b"--b-1\r\n\r\nnext"))


NAMES = {
    "control": ("filename=\"a\x01b\x1b[31m\tc.exe\"", "ab[31mc.exe"),
    "path": ("filename=\"..\\\\..\\\\Windows\\\\evil.exe\"", "evil.exe"),
    "unix-path": ("filename=\"../../etc/cron.d/x.js\"", "x.js"),
    "long": ("filename=\"" + "a" * 5000 + ".exe\"", "a" * 100),
    "quote": ("filename*=UTF-8''%22%0D%0ABcc%3A%20x%40y%22.exe", "Bcc: x@y.exe"),
}


@pytest.mark.parametrize("kind", sorted(NAMES))
@pytest.mark.parametrize("action", ["replace", "refuse"])
def test_hostile_file_names_are_shown_sanitised_in_the_note_and_the_reply(tmp_path, kind, action):
    params, shown = NAMES[kind]
    attachment = part(b"MZ", params)
    root = the_root(tmp_path, attachments__action=action)
    with running_server(root) as srv:
        code, text = send(srv, "alice@far.example", message(attachment))
    if action == "refuse":
        assert (code, text) == (554, f"5.7.1 Rejected: attachment {shown} is not accepted here")
        assert raw_delivered(root) == []
        return
    [raw] = raw_delivered(root)
    why = f"files of type {attachments.extension(shown) or '.exe'} are not accepted"
    assert_replaced(raw, attachment, shown, why)


def test_two_serving_processes_replace_and_count(tmp_path):
    root = the_root(tmp_path, server__processes=2)
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        for i in range(6):                      # new connections: the kernel spreads them
            with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=20) as s:
                s.ehlo("client.example")
                s.mail("alice@far.example")
                s.rcpt(BOB)
                assert s.data(message(BLOCKED["js-in-zip"][0] if i % 2 else BLOCKED["exe"][0]))[0] == 250
        counters = serve_status(root)["counters"]
        assert counters["attachments_replaced"] == 6
    raws = raw_delivered(root)
    assert len(raws) == 6 and all(b"was removed by the mail server" in r for r in raws)


@pytest.mark.parametrize("kind", ["100000-entries", "lying-end-record"])
def test_an_archive_over_max_entries_is_refused_before_its_directory_is_read(kind):
    """The end record's count and directory size are checked first: no 100,000 ZipInfo."""
    with pytest.raises(ValueError, match="more than 1000 entries"):
        in_cpu_time(0.05, attachments.zip_names, UNREADABLE[kind][0], 1000)
