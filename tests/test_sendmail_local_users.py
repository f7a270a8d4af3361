"""sendmail(1) for every local user: a user who cannot read the mail root submits through
the running server's run/submit.sock, which knows the caller by its peer credentials."""
from __future__ import annotations

import os
import pwd

import pytest

import engine.accept.local  # noqa: F401  (imported before fork: a child that became another user may not
import engine.localsubmit  # noqa: F401   reach the Python packages; it only runs them)
from mailctl import sendmail as sendmail_cli

from helpers_server import make_root, running_server

MESSAGE = b"Subject: from cron\nTo: alice@example.com\n\nnightly report\n"


@pytest.fixture
def open_tmp(open_tmp_path):
    if os.geteuid() != 0:
        pytest.skip("running sendmail as another user needs root")
    return open_tmp_path


def sendmail_as(user: str, root, args: list[str], message: bytes = MESSAGE) -> tuple[int, str]:
    """Run sendmail-mailctl's main() in a child process that really is `user` (setuid after
    fork): its exit code and what it wrote on stderr."""
    pw = pwd.getpwnam(user)
    msg_r, msg_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:                                       # the child: become the user, send
        try:
            os.close(msg_w)                            # else stdin never reaches its end
            os.close(err_r)
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            os.dup2(msg_r, 0)
            os.dup2(err_w, 2)
            import sys
            sys.stdin = open(0, "r", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            code = sendmail_cli.main(["--root", str(root.path), *args])
            sys.stderr.flush()
        except BaseException:
            code = 99
        os._exit(code)
    os.close(msg_r)
    os.close(err_w)
    os.write(msg_w, message)
    os.close(msg_w)
    _, status = os.waitpid(pid, 0)
    err = os.read(err_r, 65536).decode(errors="replace")
    os.close(err_r)
    return os.waitstatus_to_exitcode(status), err


def inbox_messages(root) -> list[bytes]:
    new = root.mail_dir / "example.com" / "alice" / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []


def test_nobody_sends_through_the_server_with_its_own_address_and_uid(open_tmp):
    root = make_root(open_tmp, accounts={"alice@example.com": "secret-pass-1"},
                     settings={"sendmail.sender_domain": "example.com"})
    os.chmod(root.path, 0o700)                         # a private root, as a server's own
    os.chmod(root.run_dir, 0o700)
    with running_server(root):
        code, err = sendmail_as("nobody", root, ["-t", "-i"])
        assert code == 0, err
        [msg] = inbox_messages(root)
        uid = pwd.getpwnam("nobody").pw_uid
        assert b"Return-Path: <nobody@example.com>" in msg
        assert f"from local user nobody (uid {uid})".encode() in msg
        assert b"nightly report" in msg
        # -f to a stranger is refused; nothing delivered
        code, err = sendmail_as("nobody", root, ["-f", "ceo@example.com", "-t", "-i"])
        assert code == 65 and "may not send as ceo@example.com" in err and err.count("\n") == 1
        assert len(inbox_messages(root)) == 1


def test_a_root_too_deep_for_a_socket_address_still_takes_local_users_mail(open_tmp):
    """An AF_UNIX address holds 107 bytes: run/submit.sock under a deeper root is reached
    through its folder's descriptor, by the server and by a user who may only pass through."""
    deep = open_tmp / ("a-rather-long-folder-name-" * 5)
    deep.mkdir(mode=0o711)
    root = make_root(deep, accounts={"alice@example.com": "secret-pass-1"},
                     settings={"sendmail.sender_domain": "example.com"})
    assert len(os.fsencode(str(root.run_dir / "submit.sock"))) > 108
    os.chmod(root.path, 0o700)
    os.chmod(root.run_dir, 0o700)
    with running_server(root):
        code, err = sendmail_as("nobody", root, ["-t", "-i"])
        assert code == 0, err
        [msg] = inbox_messages(root)
        assert b"Return-Path: <nobody@example.com>" in msg and b"nightly report" in msg


def test_allowed_senders_let_a_user_use_another_address(open_tmp):
    root = make_root(open_tmp, accounts={"alice@example.com": "secret-pass-1"},
                     settings={"sendmail.sender_domain": "example.com",
                               "sendmail.allowed_senders": {"nobody": ["noreply@example.com"]}})
    with running_server(root):
        code, err = sendmail_as("nobody", root, ["-f", "noreply@example.com", "alice@example.com"])
        assert code == 0, err
        [msg] = inbox_messages(root)
        assert b"Return-Path: <noreply@example.com>" in msg


def test_with_the_server_down_sendmail_exits_75_with_a_clear_message(open_tmp):
    root = make_root(open_tmp, accounts={"alice@example.com": "secret-pass-1"})
    code, err = sendmail_as("nobody", root, ["-t", "-i"])
    assert code == 75 and "not running" in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_root_still_delivers_directly_and_is_named_in_received(open_tmp):
    root = make_root(open_tmp, accounts={"alice@example.com": "secret-pass-1"})
    code, err = sendmail_as("root", root, ["-f", "anyone@example.org", "-t", "-i"])
    assert code == 0, err
    [msg] = inbox_messages(root)
    assert b"from local user root (uid 0)" in msg and b"Return-Path: <anyone@example.org>" in msg


def test_garbage_on_the_socket_gets_an_error_and_the_server_goes_on(open_tmp):
    import socket
    root = make_root(open_tmp, accounts={"alice@example.com": "secret-pass-1"},
                     settings={"sendmail.sender_domain": "example.com"})
    with running_server(root):
        for junk in (b"\xff\xfe not json\n", b"[1,2]\n", b"x" * 100_000, b""):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(str(root.run_dir / "submit.sock"))
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            reply = s.recv(65536)
            s.close()
            assert b'"ok": false' in reply and b"Traceback" not in reply and str(root.path).encode() not in reply
        code, err = sendmail_as("nobody", root, ["alice@example.com"])
        assert code == 0, err
