"""Attachment blocking over SMTP ([attachments], engine/accept/attachments.py) with a real
server and smtplib: a blocked attachment (an .exe, a .js inside a zip, an RFC 2231 or
RFC 2047 encoded name, a double extension, a MIME type) is replaced by a text note and
every other byte of the message arrives as it was sent; the refuse action; a domain that
turns it off; clean attachments untouched; who is checked (port 25 from outside, not a
trusted network unless attachments.submission); `mailctl check message`."""
from __future__ import annotations

import base64
import smtplib

import pytest

from conftest import run_cli
from engine.maildir import Maildir
from helpers_clamav import zipped
from helpers_mailauth import send
from helpers_server import make_root, running_server
from test_clamav import nothing_kept

BOB = "bob@example.com"
HEAD = (b"From: alice@far.example\r\nTo: bob@example.com\r\nSubject: see attached\r\n"
        b"Date: Sat, 05 Dec 2026 12:00:00 +0000\r\nMessage-ID: <a1@far.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"b-1\"\r\n\r\n"
        b"--b-1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob, see attached.\r\n")
TAIL = (b"\r\n--b-1\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b-1--\r\n")


def part(payload: bytes, params: str, ctype: str = "application/octet-stream") -> bytes:
    """One attachment part (without its closing CRLF, which belongs to the delimiter)."""
    return (f"--b-1\r\nContent-Type: {ctype}\r\nContent-Disposition: attachment; {params}\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode() + base64.encodebytes(payload).replace(
                b"\n", b"\r\n").rstrip(b"\r\n")


def message(attachment: bytes) -> bytes:
    return HEAD + attachment + TAIL


def the_root(tmp_path, domain_lines: str = "", **settings):
    values = {"queue.offline": True, "attachments.enabled": True, "mailauth.spf": False, "mailauth.dkim": False,
              "mailauth.dmarc": False, **{k.replace("__", "."): v for k, v in settings.items()}}
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings=values)
    if domain_lines:
        path = root.domain_file("example.com")        # top-level keys go before the tables
        path.write_text(domain_lines + "\n" + path.read_text())
    return root


def raw_delivered(root) -> list[bytes]:
    box = Maildir.for_account(root, "example.com", "bob").folder("INBOX")
    return [box.read(x).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for x in box.sync()]


def assert_replaced(raw: bytes, attachment: bytes, name: str, why: str) -> None:
    """raw is the message sent with attachment replaced by the note; everything else is the
    sender's bytes (only our header lines above them)."""
    note = (f"--b-1\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            f"Content-Disposition: attachment; filename=\"{name}.txt\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
            f"The attachment \"{name}\" was removed by the mail server: {why}.\r\n").encode()
    assert raw.endswith(HEAD + note + TAIL), raw[-900:]
    added = raw[:-len(HEAD + note + TAIL)]
    assert added.startswith(b"Return-Path: ") and b"\r\nReceived: " in added and b"\r\n\r\n" not in added


BLOCKED = {
    "exe": (part(b"MZ\x90\x00 program", 'filename="setup.exe"'), "setup.exe", "files of type .exe are not accepted"),
    "js-in-zip": (part(zipped({"readme.txt": b"hi", "docs/run.JS": b"WScript.Echo(1)"}), 'filename="files.zip"',
                       "application/zip"),
                  "files.zip", "it holds run.JS, and files of type .js are not accepted"),
    "rfc2231": (part(b"MZ", "filename*=UTF-8''Rechnung%20M%C3%A4rz.e%78e"), "Rechnung Mrz.exe",
                "files of type .exe are not accepted"),
    "rfc2231-continued": (part(b"MZ", "filename*0*=UTF-8''invoice%2E; filename*1=\"pdf.sc\"; filename*2=r"),
                          "invoice.pdf.scr", "files of type .scr are not accepted"),
    "rfc2047": (part(b"MZ", 'filename="=?utf-8?B?aW52b2ljZS5wZGYuZXhl?="'), "invoice.pdf.exe",
                "files of type .exe are not accepted"),
    "double-extension": (part(b"MZ", 'filename="invoice.pdf.EXE. . "'), "invoice.pdf.EXE. .",
                         "files of type .exe are not accepted"),
    "mime-type": (part(b"MZ", 'filename="data.bin"', "application/x-msdownload"), "data.bin",
                  "attachments of type application/x-msdownload are not accepted"),
    "name-in-content-type": (part(b"MZ", "size=2", "application/octet-stream; name=\"tool.vbs\""), "tool.vbs",
                             "files of type .vbs are not accepted"),
}


@pytest.mark.parametrize("kind", sorted(BLOCKED))
def test_a_blocked_attachment_is_replaced_by_a_note_and_the_rest_is_byte_identical(tmp_path, kind):
    attachment, name, why = BLOCKED[kind]
    root = the_root(tmp_path)
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", message(attachment))[0] == 250
    [raw] = raw_delivered(root)
    assert_replaced(raw, attachment, name, why)


def test_clean_attachments_and_a_clean_zip_pass_untouched(tmp_path):
    attachment = part(zipped({"a.txt": b"x", "b/report.pdf": b"%PDF", "setup.exe.txt": b"t"}), 'filename="ok.zip"',
                      "application/zip")
    root = the_root(tmp_path)
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", message(attachment))[0] == 250
    [raw] = raw_delivered(root)
    assert raw.endswith(message(attachment))


@pytest.mark.parametrize("where", ["global", "domain"])
def test_the_refuse_action_answers_554_naming_the_file_and_keeps_nothing(tmp_path, where):
    root = the_root(tmp_path, **({"attachments__action": "refuse"} if where == "global" else {}))
    if where == "domain":
        done = run_cli(root, "domain", "set", "example.com", "--attachment-action", "refuse")
        assert done.code == 0, done.err
    with running_server(root) as srv:
        code, text = send(srv, "alice@far.example", message(BLOCKED["double-extension"][0]))
        assert (code, text) == (554, "5.7.1 Rejected: attachment invoice.pdf.EXE. . is not accepted here")
    nothing_kept(root)


def test_a_domain_that_turns_blocking_off_gets_the_message_as_sent(tmp_path):
    root = the_root(tmp_path, "attachment_blocking = false")
    sent = message(BLOCKED["exe"][0])
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", sent)[0] == 250
    [raw] = raw_delivered(root)
    assert raw.endswith(sent)


@pytest.mark.parametrize("submission", [False, True])
def test_trusted_networks_are_checked_only_with_attachments_submission(tmp_path, submission):
    root = the_root(tmp_path, relay__trusted_networks=["127.0.0.0/8"], attachments__submission=submission)
    sent = message(BLOCKED["exe"][0])
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", sent)[0] == 250
    [raw] = raw_delivered(root)
    if submission:
        assert b"setup.exe.txt" in raw and not raw.endswith(sent)
    else:
        assert raw.endswith(sent)


def test_check_message_shows_what_would_be_removed(tmp_path):
    root = the_root(tmp_path)
    (tmp_path / "m.eml").write_bytes(message(BLOCKED["js-in-zip"][0]))
    out = run_cli(root, "check", "message", str(tmp_path / "m.eml"), "--ip", "192.0.2.1")
    assert out.code == 0, out.err
    assert ("Attachments: would be replaced by a note: files.zip (it holds run.JS, and files of type .js are "
            "not accepted)") in out.out
    (tmp_path / "ok.eml").write_bytes(message(b"--b-1\r\nContent-Type: text/plain\r\n\r\nplain"))
    assert "Attachments: none blocked" in run_cli(root, "check", "message", str(tmp_path / "ok.eml"),
                                                  "--ip", "192.0.2.1").out


def test_the_session_goes_on_after_a_replaced_and_a_refused_message(tmp_path):
    root = the_root(tmp_path, 'attachment_action = "refuse"')
    with running_server(root) as srv, smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.ehlo("client.example")
        for sent, expect in [(message(BLOCKED["exe"][0]), 554), (message(b"--b-1\r\n\r\nfine"), 250)]:
            s.mail("alice@far.example")
            s.rcpt(BOB)
            assert s.data(sent)[0] == expect
    assert len(raw_delivered(root)) == 1


def test_a_forwarded_message_holding_a_blocked_attachment_is_replaced_whole(tmp_path):
    inner = message(BLOCKED["exe"][0]).replace(b"b-1", b"in-1")
    forwarded = b"--b-1\r\nContent-Type: message/rfc822\r\n\r\n" + inner.rstrip(b"\r\n")
    root = the_root(tmp_path)
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", message(forwarded))[0] == 250
    [raw] = raw_delivered(root)
    assert_replaced(raw, forwarded, "forwarded message", "it holds setup.exe: files of type .exe are not accepted")


def test_a_message_that_is_one_blocked_part_is_refused_even_when_replacing(tmp_path):
    sent = (b"From: alice@far.example\r\nTo: bob@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/x-msdownload; name=\"run.exe\"\r\nContent-Transfer-Encoding: base64\r\n"
            b"\r\nTVo=\r\n")
    root = the_root(tmp_path)
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", sent) == (554, "5.7.1 Rejected: attachment run.exe is not accepted here")
    assert raw_delivered(root) == []


@pytest.mark.parametrize("submission", [False, True])
def test_pickup_mail_is_checked_only_with_attachments_submission(tmp_path, submission):
    import time
    root = the_root(tmp_path, attachments__submission=submission, pickup__settle_seconds=0.1,
                    pickup__poll_seconds=0.1)
    sent = message(BLOCKED["exe"][0]).replace(b"\r\n", b"\n")        # a local program's LF line ends
    with running_server(root):
        (root.pickup_dir / "m.tmp").write_bytes(sent)
        (root.pickup_dir / "m.tmp").rename(root.pickup_dir / "m.eml")
        deadline = time.monotonic() + 20
        while not raw_delivered(root) and time.monotonic() < deadline:
            time.sleep(0.1)
    [raw] = raw_delivered(root)
    assert (b'filename="setup.exe.txt"' in raw) is submission
    assert raw.endswith(TAIL) and HEAD in raw
