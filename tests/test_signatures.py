"""Signatures and disclaimers (engine/signatures.py, `mailctl signature`) on mail submitted
over real SMTP AUTH: plain, HTML, multipart/alternative and multipart/mixed messages get it
in the right part and every other byte stays; base64 and quoted-printable parts are
encoded again alike; the domain's three modes; replies and local mail only when the domain
says so; DKIM, signed on the way out after the signature, verifies."""
from __future__ import annotations

import email
import email.message
import email.policy
import smtplib
import ssl

from engine.queue import Queue
from helpers_server import mailctl, make_root, running_server

BOB, PASSWORD = "bob@example.com", "bob-password-1"
OUT = "dave@far.example"


def sig_root(tmp_path, **settings):
    root = make_root(tmp_path, accounts={BOB: PASSWORD, "cy@example.com": "cy-password-123"},
                     settings={"queue.offline": True, **settings})
    assert mailctl(root, "account", "name", BOB, "Bob Example").returncode == 0
    return root


def ok(root, *args, input=None):
    done = mailctl(root, *args, input=input)
    assert done.returncode == 0, done.stderr
    return done.stdout


def seen_by(srv, key: str, value, timeout: float = 10) -> None:
    """Until the running server has read the domain file's change."""
    import time
    deadline = time.monotonic() + timeout
    while getattr(srv.runtime.directory.domain("example.com"), key) != value:
        assert time.monotonic() < deadline, f"the server never saw {key} = {value!r}"
        time.sleep(0.05)


def submit(root, srv, data: bytes, to=(OUT,)) -> bytes:
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as s:
        s.starttls(context=ssl._create_unverified_context())
        s.login(BOB, PASSWORD)
        assert s.sendmail(BOB, list(to), data) == {}
    q = Queue(root)
    newest = max(q.all(), key=lambda e: e.created)
    return q.body_path(newest.id).read_bytes()


PLAIN = b"From: bob@example.com\r\nTo: dave@far.example\r\nSubject: hello\r\n\r\nHi Dave.\r\n"
ALTERNATIVE = (b"From: bob@example.com\r\nTo: dave@far.example\r\nSubject: alt\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\n"
               b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
               b"Gr=C3=BC=C3=9Fe.\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n"
               b"PGh0bWw+PGJvZHk+PHA+R3LDvMOfZS48L3A+PC9ib2R5PjwvaHRtbD4=\r\n--alt--\r\n")
ATTACHMENT = b"UEsDBBQAAAAIAAAAIQBZ+iv3\r\n"
MIXED = (b"From: bob@example.com\r\nTo: dave@far.example\r\nSubject: mixed\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\npreamble\r\n--mix\r\n"
         b"Content-Type: text/plain; charset=us-ascii\r\n\r\nSee the file.\r\n--mix\r\n"
         b"Content-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\n"
         b"not to be touched\r\n--mix\r\nContent-Type: application/zip; name=\"a.zip\"\r\n"
         b"Content-Transfer-Encoding: base64\r\n\r\n" + ATTACHMENT + b"--mix--\r\nepilogue\r\n")
HTML_ONLY = (b"From: bob@example.com\r\nTo: dave@far.example\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: text/html; charset=us-ascii\r\n\r\n<html><body><p>Hi</p></BODY></html>\r\n")


class _Unix(email.message.EmailMessage):
    """Parts as text with LF line ends (the stored message has CRLF)."""

    def get_content(self, *args, **kw):
        content = super().get_content(*args, **kw)
        return content.replace("\r\n", "\n") if isinstance(content, str) else content


def parsed(raw: bytes):
    return email.message_from_bytes(raw, _class=_Unix, policy=email.policy.default)


def test_each_kind_of_message_gets_it_in_the_right_part(tmp_path):
    root = sig_root(tmp_path)
    (tmp_path / "sig.txt").write_text("%NAME%\nSales, Example Ltd. — since 1999")
    ok(root, "signature", "set", BOB, "--text-file", str(tmp_path / "sig.txt"))
    with running_server(root) as srv:
        plain = submit(root, srv, PLAIN)
        alt = submit(root, srv, ALTERNATIVE)
        mixed = submit(root, srv, MIXED)
        html_only = submit(root, srv, HTML_ONLY)
    body = parsed(plain).get_content()
    assert body == "Hi Dave.\n-- \nBob Example\nSales, Example Ltd. — since 1999\n"
    assert parsed(plain)["Content-Transfer-Encoding"] == "quoted-printable"          # was 7bit: now non-ASCII
    text, rich = [p.get_content() for p in parsed(alt).iter_parts()]
    assert text.startswith("Grüße.\n-- \nBob Example\n")
    assert rich.endswith('<div class="signature">Bob Example<br>\nSales, Example Ltd. — since 1999</div></body></html>')
    assert [p["Content-Transfer-Encoding"] for p in parsed(alt).iter_parts()] == ["quoted-printable", "base64"]
    # mixed: the first text part; the text attachment, the zip, preamble and epilogue untouched
    first, notes, archive = parsed(mixed).iter_parts()
    assert first.get_content().startswith("See the file.\n-- \nBob Example")
    assert first.get_content_charset() == "utf-8"                                   # us-ascii could not hold —
    assert b"\r\nnot to be touched\r\n--mix\r\n" in mixed and ATTACHMENT + b"--mix--\r\nepilogue\r\n" in mixed
    assert b"\r\n\r\npreamble\r\n--mix\r\nContent-Type: text/plain; charset=utf-8\r\n" in mixed
    assert "Bob Example" in parsed(html_only).get_content() and b"</div></BODY></html>" in html_only


def test_the_domain_s_modes_replies_and_local_mail(tmp_path):
    root = sig_root(tmp_path)
    (tmp_path / "own.txt").write_text("Bob")
    (tmp_path / "legal.txt").write_text("This message is confidential.")
    ok(root, "signature", "set", BOB, "--text-file", str(tmp_path / "own.txt"))
    ok(root, "signature", "set", "--domain", "example.com", "--text-file", str(tmp_path / "legal.txt"))
    reply = PLAIN.replace(b"Subject: hello", b"Subject: Re: hello")
    results = {}
    with running_server(root) as srv:
        for mode in ("if_none", "overwrite", "append"):
            ok(root, "signature", "set", "--domain", "example.com", "--mode", mode)
            seen_by(srv, "signature_mode", mode)
            results[mode] = parsed(submit(root, srv, PLAIN)).get_content()
        results["reply"] = parsed(submit(root, srv, reply)).get_content()
        ok(root, "signature", "set", "--domain", "example.com", "--replies", "--local")
        seen_by(srv, "signature_replies", True)
        results["reply on"] = parsed(submit(root, srv, reply)).get_content()
    assert results["if_none"].endswith("-- \nBob\n")
    assert results["overwrite"].endswith("-- \nThis message is confidential.\n")
    assert results["append"].endswith("-- \nBob\n\nThis message is confidential.\n")
    assert results["reply"] == "Hi Dave.\n" and results["reply on"].endswith("confidential.\n")


def test_local_mail_is_left_alone_unless_the_domain_says(tmp_path):
    from engine.maildir import Maildir
    root = sig_root(tmp_path)
    (tmp_path / "own.txt").write_text("Bob")
    ok(root, "signature", "set", BOB, "--text-file", str(tmp_path / "own.txt"))
    with running_server(root) as srv, smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as s:
        s.starttls(context=ssl._create_unverified_context())
        s.login(BOB, PASSWORD)
        s.sendmail(BOB, ["cy@example.com"], PLAIN.replace(b"hello", b"inside"))
    box = Maildir.for_account(root, "example.com", "cy").folder("INBOX")
    [m] = box.sync()
    assert b"-- \n" not in box.read(m) and b"-- \r\n" not in box.read(m)


def test_dkim_verifies_after_the_signature(tmp_path):
    """The queued message with its signature is what the runner signs on the way out
    (engine/outbound/dkim.sign_outbound, the runner's own call): it verifies, and a changed
    signature line does not."""
    import json
    import dkim
    from engine import settings as settings_mod
    from engine.directory import Directory
    from engine.outbound.dkim import sign_outbound
    root = sig_root(tmp_path)
    (tmp_path / "own.txt").write_text("Bob, with a signature line long enough for quoted-printable to fold it ünd more")
    ok(root, "signature", "set", BOB, "--text-file", str(tmp_path / "own.txt"))
    key = json.loads(ok(root, "dkim", "keygen", "example.com", "--json"))
    with running_server(root) as srv:
        body = submit(root, srv, ALTERNATIVE)
    assert b"Bob, with a signature" in body.replace(b"=\r\n", b"")
    cfg = settings_mod.load(root.config_file)
    signed = sign_outbound(root, cfg, Directory.load(root, cfg), body)
    records = {key["record_name"].encode() + b".": key["record"].encode(), key["record_name"].encode(): key["record"].encode()}
    lookup = lambda name, timeout=5: records.get(name)          # noqa: E731
    assert signed.startswith(b"DKIM-Signature:") and dkim.verify(signed, dnsfunc=lookup)
    assert not dkim.verify(signed.replace(b"Bob, with", b"Rob, with"), dnsfunc=lookup)
