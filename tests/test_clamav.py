"""Virus scanning over SMTP with a real clamd (INSTREAM over its unix socket and TCP port):
EICAR attached in base64, inside a zip and in a forwarded message refused with 554 naming
it and nothing kept; a clean message passes with X-Virus-Scanned; clamd stopped: 451, and
the retry after it is back is accepted; the strip and discard actions."""
from __future__ import annotations

import os
import smtplib

import pytest

from engine.maildir import Maildir
from helpers_clamav import (EICAR, EICAR_NAME, MARKER, MARKER_NAME, Clamd, clean, nested, with_attachment,
                            zipped)
from helpers_mailauth import delivered, send
from helpers_server import make_root, running_server

BOB = "bob@example.com"


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):
    with Clamd(tmp_path_factory.mktemp("clamd")) as c:
        yield c


def server_root(tmp_path, clamd, address=None, **settings):
    values = {"queue.offline": True, "antivirus.enabled": True, "antivirus.clamd": address or clamd.socket,
              "antivirus.timeout_s": 5, "server.postmaster": "admin@example.com",
              **{f"antivirus.{k}": v for k, v in settings.items()}}
    return make_root(tmp_path, accounts={BOB: "bob-password-1", "admin@example.com": "admin-password-1"},
                     settings=values)


def nothing_kept(root) -> None:
    """No copy in any Maildir (tmp/ included) and nothing in the queue."""
    for dirpath, _dirs, files in os.walk(root.mail_dir):
        assert not [f for f in files if not f.startswith(("dovecot", "maildir", "mailctl", "subscriptions"))], \
            (dirpath, files)
    for dirpath, _dirs, files in os.walk(root.queue_dir):
        assert not [f for f in files if not f.startswith(".")], (dirpath, files)


@pytest.mark.parametrize("how", ["base64", "zip", "rfc822"])
@pytest.mark.parametrize("where", ["unix", "tcp"])
def test_infected_mail_is_refused_with_554_naming_the_virus(tmp_path, clamd, how, where):
    message = {"base64": with_attachment(EICAR),
               "zip": with_attachment(zipped({"readme.txt": b"hi", "eicar.com": EICAR}), "files.zip",
                                      "application/zip"),
               "rfc822": nested(with_attachment(EICAR))}[how]
    root = server_root(tmp_path, clamd, clamd.socket if where == "unix" else clamd.tcp)
    with running_server(root) as srv:
        code, text = send(srv, "alice@far.example", message)
        assert (code, text) == (554, f"5.7.1 Rejected: message contains a virus ({EICAR_NAME}.UNOFFICIAL)")
        assert send(srv, "alice@far.example", clean())[0] == 250       # the session's server goes on
    [ok] = delivered(root)                         # only the clean one
    assert ok["Subject"] == "hello" and ok["X-Virus-Scanned"] == "mailctl (ClamAV)"


def test_our_own_signature_in_a_text_attachment_is_found(tmp_path, clamd):
    root = server_root(tmp_path, clamd)
    with running_server(root) as srv:
        code, text = send(srv, "alice@far.example", with_attachment(b"plain words " + MARKER + b" more", "notes.txt",
                                                                    "text/plain"))
    assert code == 554 and MARKER_NAME in text
    nothing_kept(root)


def test_a_refused_message_leaves_nothing_anywhere(tmp_path, clamd):
    root = server_root(tmp_path, clamd)
    with running_server(root) as srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
            s.ehlo("client.example")
            s.mail("alice@far.example")
            s.rcpt(BOB)
            s.rcpt("someone@far.example")          # refused at RCPT (no relaying): the queue stays empty
            assert s.data(with_attachment(EICAR))[0] == 554
    nothing_kept(root)


def test_clean_mail_gets_x_virus_scanned_and_nothing_else_changes(tmp_path, clamd):
    root = server_root(tmp_path, clamd)
    message = with_attachment(b"just a PDF, honest", "report.pdf", "application/pdf")
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", message)[0] == 250
    box = Maildir.for_account(root, "example.com", "bob").folder("INBOX")
    [m] = box.sync()
    stored = box.read(m)
    assert b"\nDelivered-To: bob@example.com\nX-Virus-Scanned: mailctl (ClamAV)\nReceived: " in stored
    assert stored.endswith(message.replace(b"\r\n", b"\n"))


def test_clamd_down_is_451_and_the_retry_after_it_is_back_is_accepted(tmp_path):
    own = Clamd(tmp_path / "own").start()          # this test stops it: its own clamd
    try:
        root = server_root(tmp_path, own, own.tcp)
        with running_server(root) as srv:
            own.stop()
            assert send(srv, "alice@far.example", clean("first try")) == (
                451, "4.7.1 Virus scanner unavailable, try again later")
            assert delivered(root) == []
            own.start()
            assert send(srv, "alice@far.example", clean("first try"))[0] == 250
        [m] = delivered(root)
        assert m["Subject"] == "first try" and m["X-Virus-Scanned"] == "mailctl (ClamAV)"
    finally:
        own.stop()


def test_clamd_down_with_on_failure_accept_delivers_with_a_header(tmp_path, clamd):
    root = server_root(tmp_path, clamd, str(tmp_path / "no-such.sock"), on_failure="accept")
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", clean())[0] == 250
    assert delivered(root)[0]["X-Virus-Scanned"] == "not scanned (scanner unavailable)"


def test_strip_replaces_only_the_infected_part(tmp_path, clamd):
    root = server_root(tmp_path, clamd, action="strip")
    message = with_attachment(EICAR, "invoice.com")
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", message)[0] == 250
    box = Maildir.for_account(root, "example.com", "bob").folder("INBOX")
    [m] = box.sync()
    stored = box.read(m).replace(b"\n", b"\r\n")
    head, _, _ = message.partition(b"Content-Type: application/octet-stream")
    tail = b"\r\n--b-1--\r\n"
    note = (b"Content-Type: text/plain; charset=us-ascii\r\n"
            b"Content-Disposition: attachment; filename=\"invoice.com.txt\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
            b"The attachment \"invoice.com\" was removed by the mail server: it contained the virus "
            + f"{EICAR_NAME}.UNOFFICIAL.\r\n".encode())
    assert stored.endswith(head + note + tail)
    assert f"\r\nX-Virus-Scanned: mailctl ({EICAR_NAME}.UNOFFICIAL removed)\r\nReceived: ".encode() in stored
    assert EICAR not in stored


def test_strip_of_a_message_that_is_all_virus_refuses_it(tmp_path, clamd):
    root = server_root(tmp_path, clamd, action="strip")
    message = b"From: a@far.example\r\nTo: bob@example.com\r\nSubject: x\r\n\r\n" + EICAR + b"\r\n"
    with running_server(root) as srv:
        code, text = send(srv, "alice@far.example", message)
    assert code == 554 and EICAR_NAME in text
    nothing_kept(root)


def test_discard_accepts_keeps_nothing_and_tells_the_administrator(tmp_path, clamd):
    root = server_root(tmp_path, clamd, action="discard")
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", with_attachment(EICAR))[0] == 250
    assert delivered(root) == []
    [notice] = delivered(root, user="admin")
    assert notice["Subject"] == f"Virus {EICAR_NAME}.UNOFFICIAL found; message discarded"
    body = notice.get_payload()
    assert "<alice@far.example>" in body and BOB in body and EICAR.decode() not in body


def test_no_header_when_turned_off_and_per_domain_opt_out(tmp_path, clamd):
    from engine import directory_edit, settings as settings_mod
    root = server_root(tmp_path, clamd, header=False)
    directory_edit.add_domain(root, settings_mod.load(root.config_file), "lab.example")
    directory_edit.set_domain(root, settings_mod.load(root.config_file), "lab.example", antivirus=False)
    directory_edit.add_account(root, settings_mod.load(root.config_file), "eve@lab.example", "x")
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", clean())[0] == 250
        assert send(srv, "alice@far.example", with_attachment(EICAR), rcpt="eve@lab.example")[0] == 250
        assert send(srv, "alice@far.example", with_attachment(EICAR))[0] == 554
    [m] = delivered(root)
    assert m["X-Virus-Scanned"] is None
    assert len(Maildir.for_account(root, "lab.example", "eve").folder("INBOX").sync()) == 1


def test_over_max_size_is_accepted_unscanned_or_refused(tmp_path, clamd):
    root = server_root(tmp_path, clamd, max_size_mb=0.01)
    big = with_attachment(EICAR + b"\0" * 20000)
    with running_server(root) as srv:
        assert send(srv, "alice@far.example", big)[0] == 250
    assert delivered(root)[0]["X-Virus-Scanned"] == "not scanned (larger than 0.01 MB)"
    root2 = server_root(tmp_path / "2", clamd, max_size_mb=0.01, oversize="reject")
    with running_server(root2) as srv:
        assert send(srv, "alice@far.example", big) == (552, "5.3.4 Message too large to be scanned for viruses")


def test_strip_refuses_what_is_still_infected_after_stripping(tmp_path, clamd):
    """A virus outside every part (here our test signature in the multipart's preamble) is
    found by the scan of the stripped message: refused, not delivered half-cleaned."""
    root = server_root(tmp_path, clamd, action="strip")
    message = with_attachment(EICAR).replace(b"\r\n\r\n--b-1\r\n", b"\r\n\r\nPreamble " + MARKER + b"\r\n--b-1\r\n", 1)
    with running_server(root) as srv:
        code, text = send(srv, "alice@far.example", message)
    assert code == 554 and EICAR_NAME in text
    nothing_kept(root)


def test_sieve_s_virustest_reads_the_scan(tmp_path, clamd):
    """RFC 5235 virustest through real delivery: clean is 1, a stripped virus 2, not
    scanned 0 (clamd unreachable, on_failure accept)."""
    from engine.sieve import scripts
    script = 'require ["virustest", "fileinto", "mailbox", "variables"];\n' \
             'if virustest :matches "*" { fileinto :create "Virus${1}"; }\n'
    for name, address, body, folder in (("clean", None, clean(), "Virus1"),
                                        ("stripped", None, with_attachment(EICAR, "invoice.com"), "Virus2"),
                                        ("unscanned", str(tmp_path / "no-such.sock"), clean(), "Virus0")):
        root = server_root(tmp_path / name, clamd, address, action="strip", on_failure="accept")
        home = Maildir.for_account(root, "example.com", "bob").path
        scripts.put_script(home, "av", script)
        scripts.activate(home, "av")
        with running_server(root) as srv:
            assert send(srv, "alice@far.example", body)[0] == 250
        assert len(delivered(root, folder=folder)) == 1, name
