"""ManageSieve (RFC 5804, engine/managesieve/): sieve-connect, the Debian client, uploads,
lists, activates, downloads and deletes a user's scripts over STARTTLS, and delivery runs
the script it activated; the protocol's answers (response codes, literals, quotas) spoken
raw; hostile input; two sessions in two serving processes on one user's scripts."""
from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import threading

import pytest

from helpers_dnsbl import delivered, send
from helpers_process import serving_pid
from helpers_server import make_root, running_server, serve_process, wait_for_processes
from helpers_spamscan import message

BOB, PASSWORD = "bob@example.com", "bob-password-1"
SIEVE_CONNECT = shutil.which("sieve-connect") or "/usr/bin/sieve-connect"
SCRIPT = 'require "fileinto";\r\nif header :contains "subject" "report" {\r\n  fileinto "Reports";\r\n}\r\n'


def plain(user: str = BOB, password: str = PASSWORD) -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


class Client:
    """ManageSieve spoken raw: send a command, read up to its OK, NO or BYE line."""

    def __init__(self, port: int, source: str = "127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", port), 10, source_address=(source, 0))
        self.file = self.sock.makefile("rb")
        self.greeting = self.response()

    def response(self) -> bytes:
        out = []
        while True:
            line = first = self.file.readline()
            out.append(line)
            if line.rstrip().endswith(b"}") and b"{" in line:       # a literal: its octets, then the line's end
                out.append(self.file.read(int(line[line.rindex(b"{") + 1:line.rindex(b"}")])))
                out.append(self.file.readline())
            if not first or first[:2] in (b"OK", b"NO") or first[:3] == b"BYE":
                return b"".join(out)

    def __call__(self, command: bytes) -> bytes:
        self.sock.sendall(command + b"\r\n")
        return self.response()

    def login(self) -> None:
        assert self(b'AUTHENTICATE "PLAIN" "' + plain() + b'"').startswith(b"OK")

    def close(self) -> None:
        self.sock.close()


def ms_root(tmp_path, **settings):
    return make_root(tmp_path, accounts={BOB: PASSWORD}, settings={"queue.offline": True, **settings})


def sieve_connect(tmp_path, port: int, *args: str) -> subprocess.CompletedProcess:
    """sieve-connect as a user runs it: STARTTLS (our self-signed certificate), PLAIN, the
    password on a descriptor, a HOME of its own."""
    if not os.path.exists(SIEVE_CONNECT):
        pytest.skip("sieve-connect is not installed (Debian package sieve-connect)")
    home = tmp_path / "client-home"
    home.mkdir(exist_ok=True)
    read, write = os.pipe()
    os.write(write, PASSWORD.encode() + b"\n")
    os.close(write)
    try:
        return subprocess.run([SIEVE_CONNECT, "-s", "127.0.0.1", "-p", str(port), "-u", BOB, "-m", "PLAIN",
                               "--notlsverify", "--passwordfd", str(read), *args], pass_fds=(read,),
                              capture_output=True, text=True, timeout=60, cwd=home,
                              env={"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"})
    finally:
        os.close(read)


def test_sieve_connect_manages_the_script_that_delivery_runs(tmp_path):
    root = ms_root(tmp_path)
    local = tmp_path / "client-home"
    local.mkdir()
    (local / "reports.sieve").write_text(SCRIPT)
    with running_server(root) as srv:
        port = srv.ports["managesieve"]
        for args in (["--upload", "--localsieve", "reports.sieve", "--remotesieve", "reports"],
                     ["--activate", "--remotesieve", "reports"]):
            done = sieve_connect(tmp_path, port, *args)
            assert done.returncode == 0, done.stderr
        listed = sieve_connect(tmp_path, port, "--list")
        assert listed.returncode == 0 and listed.stdout == '"reports" ACTIVE\n', listed.stdout
        done = sieve_connect(tmp_path, port, "--download", "--remotesieve", "reports", "--localsieve", "back.sieve")
        assert done.returncode == 0, done.stderr
        assert (local / "back.sieve").read_bytes() == SCRIPT.encode()
        # the same files delivery reads (Pigeonhole's layout)
        assert (root.mail_dir / "example.com" / "bob" / "sieve" / "reports.sieve").read_bytes() == SCRIPT.encode()
        srv_imap_create(srv, "Reports")
        assert send(srv.ports["smtp"], message(subject="weekly report"))[0] == 250
        assert send(srv.ports["smtp"], message(subject="lunch"))[0] == 250
        assert set(delivered(root, "Reports")) == {"weekly report"} and set(delivered(root)) == {"lunch"}
        # a script with an error is refused with its line, and nothing is stored
        (local / "broken.sieve").write_text('require "fileinto";\nfileinto\n')
        broken = sieve_connect(tmp_path, port, "--upload", "--localsieve", "broken.sieve", "--remotesieve", "broken")
        assert broken.returncode != 0 and "line 2" in broken.stdout + broken.stderr
        for args in (["--deactivate"], ["--delete", "--remotesieve", "reports"]):
            done = sieve_connect(tmp_path, port, *args)
            assert done.returncode == 0, done.stderr
        assert sieve_connect(tmp_path, port, "--list").stdout.strip() == ""


def srv_imap_create(srv, folder: str) -> None:
    import imaplib
    c = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    c.starttls(ssl._create_unverified_context())
    c.login(BOB, PASSWORD)
    assert c.create(folder)[0] == "OK"
    c.logout()


def test_the_protocol_s_answers(tmp_path):
    root = ms_root(tmp_path, **{"auth.allow_plaintext": True})
    with running_server(root) as srv:
        c = Client(srv.ports["managesieve"])
        assert b'"SASL" "PLAIN"' in c.greeting and b'"STARTTLS"' in c.greeting
        assert b' fileinto ' in c.greeting.split(b'"SIEVE" ')[1] and c.greeting.endswith(b'OK "mailctl ManageSieve ready."\r\n')
        assert c(b"LISTSCRIPTS").startswith(b'NO "Log in first')
        assert c(b'AUTHENTICATE "PLAIN" "' + plain(password="wrong-password") + b'"') == b'NO "Authentication failed."\r\n'
        # the response in a continuation, as a literal
        c.sock.sendall(b'AUTHENTICATE "PLAIN"\r\n')
        assert c.file.readline() == b'""\r\n'
        assert c(b'"' + plain() + b'"') == b'OK "Logged in."\r\n'
        assert c(b'PUTSCRIPT "a" {%d+}\r\n' % len(SCRIPT) + SCRIPT.encode()) == b'OK "Putscript completed."\r\n'
        assert c(b'PUTSCRIPT "b" {11}\r\nkeep;\r\nkeep').startswith(b'NO "line 2')   # a synchronising literal
        assert c(b'PUTSCRIPT "b" "keep;"') == b'OK "Putscript completed."\r\n'
        assert c(b'SETACTIVE "a"') == b'OK "Setactive completed."\r\n'
        assert c(b"LISTSCRIPTS") == b'"a" ACTIVE\r\n"b"\r\nOK "Listscripts completed."\r\n'
        assert c(b'GETSCRIPT "a"') == b"{%d}\r\n" % len(SCRIPT) + SCRIPT.encode() + b'\r\nOK "Getscript completed."\r\n'
        assert c(b'DELETESCRIPT "a"').startswith(b"NO (ACTIVE)")
        assert c(b'RENAMESCRIPT "b" "a"').startswith(b"NO (ALREADYEXISTS)")
        assert c(b'RENAMESCRIPT "a" "c"') == b'OK "Renamescript completed."\r\n'
        assert c(b"LISTSCRIPTS") == b'"b"\r\n"c" ACTIVE\r\nOK "Listscripts completed."\r\n'      # still active
        assert c(b'GETSCRIPT "nothing"').startswith(b"NO (NONEXISTENT)")
        assert c(b'HAVESPACE "d" 600000').startswith(b"NO (QUOTA/MAXSIZE)")
        assert c(b'HAVESPACE "d" 100') == b'OK "Putscript would succeed."\r\n'
        assert c(b'CHECKSCRIPT "fileinto \\"x\\";"').startswith(b"NO ")                 # fileinto not required
        assert b"line 1:" in c(b'CHECKSCRIPT "fileinto \\"x\\";"')
        assert c(b'CHECKSCRIPT "keep;"') == b'OK "Script is valid."\r\n'
        assert c(b'NOOP "t1"') == b'OK (TAG "t1") "NOOP completed."\r\n'
        assert c(b'SETACTIVE ""') == b'OK "Setactive completed."\r\n'
        assert c(b'DELETESCRIPT "c"') == b'OK "Deletescript completed."\r\n'
        assert c(b"LOGOUT") == b'OK "Logout completed."\r\n'
        c.close()


def test_a_password_waits_for_tls_unless_allowed(tmp_path):
    with running_server(ms_root(tmp_path)) as srv:
        c = Client(srv.ports["managesieve"])
        assert b'"SASL" ""' in c.greeting
        assert c(b'AUTHENTICATE "PLAIN" "' + plain() + b'"').startswith(b"NO (ENCRYPT-NEEDED)")
        assert c(b"STARTTLS") == b'OK "Begin TLS negotiation now."\r\n'
        tls = ssl._create_unverified_context().wrap_socket(c.sock)
        c.sock, c.file = tls, tls.makefile("rb")
        again = c.response()          # the capabilities again, now with PLAIN (RFC 5804 §2.2)
        assert b'"SASL" "PLAIN"' in again and b'"STARTTLS"' not in again and again.endswith(b'successful."\r\n')
        c.login()
        assert c(b"LISTSCRIPTS") == b'OK "Listscripts completed."\r\n'
        c.close()


def test_hostile_input_gets_a_clear_answer_and_the_server_serves_on(tmp_path):
    root = ms_root(tmp_path, **{"auth.allow_plaintext": True})
    with running_server(root) as srv:
        port = srv.ports["managesieve"]
        c = Client(port)
        c.login()
        answers = [c(line) for line in (
            b'GETSCRIPT "../../../etc/passwd"', b'PUTSCRIPT "../x" "keep;"', b'PUTSCRIPT ".hidden" "keep;"',
            b'PUTSCRIPT "a\\\\b" "keep;"', b'GETSCRIPT "unclosed', b'GETSCRIPT "\xff\xfe"', b"GETSCRIPT",
            b'GETSCRIPT "a" "b" "c"', b"HAVESPACE \"a\" -5", b"(((", b"PUTSCRIPT \"x\" {5+}\r\n\xff\xff\xff\xff\xff",
            b'PUTSCRIPT "deep" "' + b"if true {" * 100 + b'"', b"\x00\x01\x02")]
        for a in answers:
            assert a.startswith(b"NO ") and b"Traceback" not in a and str(tmp_path).encode() not in a, a
            assert b"/" + str(root.path).split("/")[1].encode() not in a, a
        assert not (root.path / "etc").exists() and not list(root.path.rglob("x.sieve"))
        # a literal too large to read ends the session with BYE; others are served
        assert c(b'PUTSCRIPT "big" {999999999+}').startswith(b'BYE "Literal too large.')
        c.close()
        long_line = Client(port)
        assert long_line(b"NOOP " + b"x" * 20000).startswith(b'BYE "Line too long.')
        long_line.close()
        noisy = Client(port)
        for _ in range(19):
            assert noisy(b"BOGUS").startswith(b"NO")
        assert noisy(b"BOGUS").startswith(b"NO") and noisy.response() == b'BYE "Too many invalid commands."\r\n'
        noisy.close()
        fine = Client(port)
        fine.login()
        assert fine(b'PUTSCRIPT "ok" "keep;"').startswith(b"OK")
        fine.close()
    assert "Traceback" not in (root.log_dir / "mailctl.log").read_text() if (root.log_dir / "mailctl.log").exists() else True


def test_two_sessions_in_two_serving_processes_share_the_scripts(tmp_path):
    root = ms_root(tmp_path, **{"auth.allow_plaintext": True, "server.processes": 2})
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        port, top = proc.ports["managesieve"], proc.proc.pid
        by_pid: dict[int, Client] = {}
        for n in range(2, 120):
            c = Client(port, f"127.0.3.{n}")
            pid = serving_pid(c.sock, top)
            if pid in by_pid:
                c.close()
            else:
                by_pid[pid] = c
            if len(by_pid) == 2:
                break
        assert len(by_pid) == 2
        one, two = by_pid.values()
        one.login()
        two.login()
        assert one(b'PUTSCRIPT "shared" "keep;"').startswith(b"OK")
        assert two(b'SETACTIVE "shared"').startswith(b"OK")
        assert one(b"LISTSCRIPTS") == b'"shared" ACTIVE\r\nOK "Listscripts completed."\r\n'
        # both store the same name at once: the file is one whole script, never a mix
        texts = {s: f'# {"x" * 5000} {s}\r\nkeep;\r\n'.encode() for s in ("one", "two")}
        replies = {}

        def put(c, who):
            replies[who] = c(b'PUTSCRIPT "shared" {%d+}\r\n' % len(texts[who]) + texts[who])
        threads = [threading.Thread(target=put, args=(c, who)) for c, who in ((one, "one"), (two, "two"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(r.startswith(b"OK") for r in replies.values()), replies
        got = one(b'GETSCRIPT "shared"')
        assert any(text in got for text in texts.values()), got[:200]
        assert two(b"LISTSCRIPTS") == b'"shared" ACTIVE\r\nOK "Listscripts completed."\r\n'
        for c in (one, two):
            c.close()


def test_sievelib_a_python_client_manages_the_scripts(tmp_path):
    from sievelib.managesieve import Client as SievelibClient
    root = ms_root(tmp_path, **{"auth.allow_plaintext": True})
    with running_server(root) as srv:
        c = SievelibClient("127.0.0.1", srv.ports["managesieve"])
        assert c.connect(BOB, PASSWORD, authmech="PLAIN")
        assert c.get_implementation() == "mailctl" and "fileinto" in c.get_sieve_capabilities()
        assert c.havespace("rules", len(SCRIPT)) and c.putscript("rules", SCRIPT)
        assert not c.putscript("broken", "fileinto;")           # not required, and no folder
        assert c.checkscript(SCRIPT) and not c.checkscript("if {")
        assert c.setactive("rules") and c.listscripts() == ("rules", [])
        assert c.getscript("rules").splitlines() == SCRIPT.splitlines()        # it reads the lines
        assert c.renamescript("rules", "filters") and c.listscripts() == ("filters", [])
        assert c.setactive("") and c.deletescript("filters") and c.listscripts() == (None, [])
        c.logout()


def test_failed_logins_ban_the_address_here_and_on_imap(tmp_path):
    import imaplib
    root = ms_root(tmp_path, **{"auth.allow_plaintext": True, "auth.ban_after_failures": 3, "auth.failure_delay_s": 0})
    with running_server(root) as srv:
        c = Client(srv.ports["managesieve"], "127.0.0.9")
        for _ in range(2):
            assert c(b'AUTHENTICATE "PLAIN" "' + plain(password="wrong-one") + b'"') == b'NO "Authentication failed."\r\n'
        assert c(b'AUTHENTICATE "PLAIN" "' + plain(password="wrong-one") + b'"').startswith(b"BYE")
        c.close()
        again = Client(srv.ports["managesieve"], "127.0.0.9")
        assert again.greeting.startswith(b"BYE") and b"banned" in again.greeting
        again.close()
        imaplib.IMAP4("127.0.0.1", srv.ports["imap"]).logout()      # another address: served
        sock = socket.create_connection(("127.0.0.1", srv.ports["imap"]), 10, source_address=("127.0.0.9", 0))
        assert b"BYE" in sock.recv(200)
        sock.close()


def test_an_include_must_resolve_before_a_script_is_stored(tmp_path):
    root = ms_root(tmp_path, **{"auth.allow_plaintext": True})
    with running_server(root) as srv:
        c = Client(srv.ports["managesieve"])
        c.login()
        main = b'require "include";\r\ninclude "filters";\r\n'
        assert b"no personal script 'filters'" in c(b'PUTSCRIPT "main" {%d+}\r\n' % len(main) + main)
        assert c(b'PUTSCRIPT "filters" "keep;"').startswith(b"OK")
        assert c(b'CHECKSCRIPT {%d+}\r\n' % len(main) + main).startswith(b"OK")
        assert c(b'PUTSCRIPT "main" {%d+}\r\n' % len(main) + main).startswith(b"OK")
        loop = b'require "include";\r\ninclude "loop";\r\n'
        assert c(b'PUTSCRIPT "loop" {%d+}\r\n' % len(loop) + loop).startswith(b"NO")      # not there yet, nor ever
        c.close()
