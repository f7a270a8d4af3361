"""Bare LF in DATA (issue 13, defect 12): mended into CRLF for authenticated clients and
trusted networks (relay.bare_newline = "normalize_trusted", the default), still refused
from anyone else on port 25; the end-of-data variants of SMTP smuggling refused from every
client. Real server, real clients: smtplib with raw DATA bytes, and curl --upload-file."""
from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import time
import uuid

import pytest

from engine.maildir import Maildir
from helpers_server import make_root, running_server, tls_context, write_settings

PW = "alice-password-1"
ALICE = "alice@example.com"
SETTINGS = {"queue.offline": True, "relay.trusted_networks": ["::1/128"],
            "listeners.smtp.bind": ["127.0.0.1", "::1"], "listeners.submission.bind": ["127.0.0.1", "::1"]}
REFUSED = (554, b"5.6.0")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("barelf"), accounts={ALICE: PW}, settings=SETTINGS)
    with running_server(root) as server:
        yield server


def connect(srv, listener: str, host: str = "127.0.0.1", login: bool = True) -> smtplib.SMTP:
    if listener == "submissions":
        s = smtplib.SMTP_SSL(host, srv.ports[listener], timeout=20, context=tls_context())
    else:
        s = smtplib.SMTP(host, srv.ports[listener], timeout=20)
    s.ehlo("client.test")
    if login:
        if listener == "submission":
            s.starttls(context=tls_context())
            s.ehlo("client.test")
        s.login(ALICE, PW)
    return s


def send_raw(s: smtplib.SMTP, wire: bytes, sender: str = ALICE) -> tuple[int, bytes]:
    """MAIL, RCPT, DATA, then `wire` exactly as given (smtplib's data() would mend it),
    which must carry its own end of data."""
    assert s.mail(sender)[0] == 250
    assert s.rcpt(ALICE)[0] == 250
    assert s.docmd("DATA")[0] == 354
    s.send(wire)
    return s.getreply()


def stored(srv, token: str) -> list[bytes]:
    """Alice's message files that hold `token`."""
    box = Maildir.for_account(srv.root, "example.com", "alice")
    found = []
    for sub in ("new", "cur"):
        for name in os.listdir(box.path / sub):
            data = (box.path / sub / name).read_bytes()
            if token.encode() in data:
                found.append(data)
    return found


def split_stored(data: bytes) -> tuple[list[bytes], bytes]:
    """A Maildir file (LF line ends, as Dovecot writes them): its header lines, its body."""
    head, _, body = data.partition(b"\n\n")
    return head.split(b"\n"), body


def lf_message(token: str) -> bytes:
    """An LF-only message as a Unix script writes it: lines that begin with dots, which
    nothing stuffed (a dot after a bare LF is the sender's text), a blank line inside."""
    return (f"From: {ALICE}\nTo: {ALICE}\nSubject: {token}\n\nline one\n.x starts with a dot\n"
            f"..y starts with two\n\nlast line\n").encode()


def assert_mended(srv, token: str, body: bytes, submitted: bool = True) -> None:
    """Stored once, as the same message sent with CRLF would be: every line a line (on
    submission the header block was found, so Date and Message-ID were added to it), no
    CR left anywhere."""
    (data,) = stored(srv, token)
    head, stored_body = split_stored(data)
    assert f"Subject: {token}".encode() in head
    if submitted:
        assert any(h.startswith(b"Message-ID: ") for h in head) and any(h.startswith(b"Date: ") for h in head)
    assert stored_body == body and b"\r" not in data


# -- what is accepted now ---------------------------------------------------------------

@pytest.mark.parametrize("listener", ["submission", "submissions"])
def test_authenticated_lf_only_message_is_accepted_and_mended(srv, listener):
    token = uuid.uuid4().hex
    with connect(srv, listener) as s:
        code, text = send_raw(s, lf_message(token) + b"\r\n.\r\n")
        assert code == 250, text
        assert s.noop()[0] == 250                       # still in step
    assert_mended(srv, token, b"line one\n.x starts with a dot\n..y starts with two\n\nlast line\n\n")


def test_mixed_line_ends_and_dot_stuffing_from_an_authenticated_client(srv):
    """CRLF lines are SMTP lines (their leading dot is stuffing); LF-only lines are not."""
    token = uuid.uuid4().hex
    wire = (f"From: {ALICE}\r\nSubject: {token}\n\r\n..crlf stuffed\r\n.crlf again\nplain\n.lf kept\n"
            f"..lf kept too\nend\r\n.\r\n").encode()
    with connect(srv, "submission") as s:
        assert send_raw(s, wire)[0] == 250
    assert_mended(srv, token, b".crlf stuffed\ncrlf again\nplain\n.lf kept\n..lf kept too\nend\n")


def test_trusted_network_client_is_mended_without_auth(srv):
    """relay.trusted_networks (here ::1) is vouched for, on 587 and on 25 alike."""
    for listener in ("submission", "smtp"):
        token = uuid.uuid4().hex
        with connect(srv, listener, host="::1", login=False) as s:
            code, text = send_raw(s, lf_message(token) + b"\r\n.\r\n")
            assert code == 250, (listener, text)
        assert_mended(srv, token, b"line one\n.x starts with a dot\n..y starts with two\n\nlast line\n\n",
                      submitted=listener == "submission")


def test_large_message_of_bare_lf_lines_mended_across_chunk_boundaries(srv):
    """Past 2 MB the message goes to a file as it arrives; bare LFs, and CR LF pairs cut
    between two reads (CR at the end of one, LF at the start of the next), are judged
    the same wherever a read ends."""
    token = uuid.uuid4().hex
    lines = [b"%07d %s" % (i, b"abcdefghij" * 6) for i in range(45000)]      # ~3.1 MB
    body = b"".join(line + (b"\r\n" if i % 3 == 0 else b"\n") for i, line in enumerate(lines))
    wire = f"From: {ALICE}\nSubject: {token}\n\n".encode() + body + b"\r\n.\r\n"
    cuts = [i for i in range(1, len(wire)) if wire[i - 1:i + 1] == b"\r\n"][::3000]
    with connect(srv, "submission") as s:
        assert s.mail(ALICE)[0] == 250 and s.rcpt(ALICE)[0] == 250
        assert s.docmd("DATA")[0] == 354
        start = 0
        for cut in cuts:                         # each write ends between a CR and its LF
            s.send(wire[start:cut])
            time.sleep(0.002)
            start = cut
        s.send(wire[start:])
        code, text = s.getreply()
        assert code == 250, text
    (data,) = stored(srv, token)
    assert split_stored(data)[1] == b"".join(line + b"\n" for line in lines) + b"\n"
    assert b"\r" not in data


@pytest.mark.parametrize("listener,scheme", [("submission", "smtp"), ("submissions", "smtps")])
def test_curl_upload_of_an_lf_only_file(srv, tmp_path, listener, scheme):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (scripts/apt-packages.txt)")
    token = uuid.uuid4().hex
    message = tmp_path / "message.txt"
    message.write_bytes(lf_message(token))
    home = tmp_path / "home"
    home.mkdir()
    args = [curl, "--silent", "--show-error", "--max-time", "30", f"{scheme}://127.0.0.1:{srv.ports[listener]}",
            "--cacert", str(srv.root.path / "tls" / "cert.pem"), "--user", f"{ALICE}:{PW}",
            "--mail-from", ALICE, "--mail-rcpt", ALICE, "--upload-file", str(message)]
    if scheme == "smtp":
        args.append("--ssl-reqd")
    done = subprocess.run(args, capture_output=True, timeout=60, env={"HOME": str(home), "PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr
    # curl stuffs no dot after a bare LF and ends an LF-only file with CRLF . CRLF: one blank line more
    assert_mended(srv, token, b"line one\n.x starts with a dot\n..y starts with two\n\nlast line\n\n")


# -- what stays refused ---------------------------------------------------------------

def test_port_25_stranger_bare_lf_still_refused(srv):
    token = uuid.uuid4().hex
    with connect(srv, "smtp", login=False) as s:
        code, text = send_raw(s, lf_message(token) + b"\r\n.\r\n", sender="someone@far.example")
        assert (code, text[:5]) == REFUSED, text
        assert s.rset()[0] == 250                      # read to its real end: still in step
        ok = f"Subject: {token}\r\n\r\nwith CRLF\r\n.\r\n".encode()
        assert send_raw(s, ok, sender="someone@far.example")[0] == 250
    (data,) = stored(srv, token)
    assert b"with CRLF" in data and b"line one" not in data


SMUGGLING = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r"]


@pytest.mark.parametrize("end", SMUGGLING, ids=lambda b: b.decode().replace("\r", "CR").replace("\n", "LF"))
@pytest.mark.parametrize("who", ["authenticated", "trusted", "stranger"])
def test_smuggled_end_of_data_never_ends_data_and_is_refused(srv, who, end):
    """A fake end of data with a second transaction behind it: for every client, nothing of
    it is a command, and the message is refused (the real end is the only end)."""
    token, smuggled = uuid.uuid4().hex, uuid.uuid4().hex
    sender = "someone@far.example" if who == "stranger" else ALICE
    with connect(srv, "submission" if who == "authenticated" else "smtp",
                 host="::1" if who == "trusted" else "127.0.0.1", login=who == "authenticated") as s:
        if who != "stranger":                          # this client's bare LF is mended ...
            assert send_raw(s, lf_message(token) + b"\r\n.\r\n")[0] == 250
        wire = (f"From: {ALICE}\r\nSubject: smuggler\r\n\r\nhello".encode() + end
                + f"MAIL FROM:<{sender}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\nSubject: {smuggled}\r\n\r\nx\r\n".encode()
                + b".\r\n")
        code, text = send_raw(s, wire, sender=sender)  # ... and this one is refused, once
        assert (code, text[:5]) == REFUSED, text
        assert s.noop()[0] == 250
    assert stored(srv, smuggled) == []


# -- the setting ------------------------------------------------------------------------

@pytest.fixture
def bare_newline(srv):
    def set_mode(mode: str) -> None:
        write_settings(srv.root, {**SETTINGS, "relay.bare_newline": mode})
        assert srv.runtime.reload() == [] and srv.runtime.settings.relay.bare_newline == mode
    yield set_mode
    write_settings(srv.root, SETTINGS)
    assert srv.runtime.reload() == []


def test_reject_refuses_bare_lf_even_from_authenticated_clients(srv, bare_newline):
    bare_newline("reject")
    with connect(srv, "submission") as s:
        code, text = send_raw(s, lf_message(uuid.uuid4().hex) + b"\r\n.\r\n")
        assert (code, text[:5]) == REFUSED, text


def test_normalize_mends_bare_lf_from_anyone_but_smuggling_stays_refused(srv, bare_newline):
    bare_newline("normalize")
    token = uuid.uuid4().hex
    with connect(srv, "smtp", login=False) as s:
        assert send_raw(s, lf_message(token) + b"\r\n.\r\n", sender="someone@far.example")[0] == 250
        code, text = send_raw(s, b"Subject: s\r\n\r\na\n.\nb\r\n.\r\n", sender="someone@far.example")
        assert (code, text[:5]) == REFUSED, text
    assert len(stored(srv, token)) == 1


@pytest.mark.parametrize("old, new", [("true", "normalize_trusted"), ("false", "reject")])
def test_the_replaced_key_of_an_older_config_still_loads(tmp_path, old, new):
    """A mailctl.toml edited by hand for an earlier version keeps loading, meaning the same."""
    from engine import settings as settings_mod
    path = tmp_path / "mailctl.toml"
    path.write_text(f"[relay]\nallow_bare_lf_from_trusted = {old}\n")
    assert settings_mod.load(path).relay.bare_newline == new
