"""RFC 5321 §4.5.1 on port 25, without authentication: <Postmaster> (any case, no domain)
and postmaster@ every local domain are accepted and delivered to the administrator
(server.postmaster) when no account or alias of that name exists; an explicit
postmaster alias still wins; postmaster@ a foreign domain is still no relay."""
from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from engine import directory_edit, settings as settings_mod
from engine.queue import Queue

from helpers_server import make_root, running_server

ADMIN = "admin@example.com"
SETTINGS = {"server.postmaster": ADMIN, "queue.offline": True}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("postmaster"), domains=("example.com", "other.test", "third.test"),
                     accounts={ADMIN: "admin-password-1", "alice@other.test": "alice-password-1"},
                     settings=SETTINGS)
    # other.test has its own postmaster: an alias to alice
    directory_edit.add_alias(root, settings_mod.load(root.config_file), "postmaster@other.test",
                             ["alice@other.test"])
    with running_server(root) as server:
        yield server


def inbox(root, address: str) -> Path:
    local, _, domain = address.partition("@")
    return root.mail_dir / domain / local / "new"


def subjects_in(root, address: str) -> list[str]:
    new = inbox(root, address)
    if not new.is_dir():
        return []
    out = []
    for p in new.iterdir():
        for line in p.read_bytes().split(b"\n"):
            if line.startswith(b"Subject: "):
                out.append(line[9:].decode().strip())
                break
    return out


def send(port: int, rcpt: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("mx.remote.example")
        assert s.mail("someone@remote.example")[0] == 250
        code, text = s.rcpt(rcpt)
        assert code == 250, (rcpt, code, text)
        code, text = s.data(f"From: someone@remote.example\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nhello\r\n"
                            .encode())
        assert code == 250, (rcpt, code, text)


@pytest.mark.parametrize("rcpt", ["<postmaster>", "<PostMaster>", "<POSTMASTER>", "<postmaster@example.com>",
                                  "<PostMaster@third.test>"])
def test_postmaster_is_accepted_without_auth_and_lands_with_the_administrator(srv, rcpt):
    subject = f"to {rcpt.strip('<>')}"
    send(srv.ports["smtp"], rcpt, subject)
    assert subject in subjects_in(srv.root, ADMIN)
    assert subject not in subjects_in(srv.root, "alice@other.test")


def test_an_existing_postmaster_alias_still_wins(srv):
    send(srv.ports["smtp"], "<postmaster@other.test>", "for the other postmaster")
    assert "for the other postmaster" in subjects_in(srv.root, "alice@other.test")
    assert "for the other postmaster" not in subjects_in(srv.root, ADMIN)


def test_postmaster_of_a_foreign_domain_is_no_relay(srv):
    before = len(Queue(srv.root).all())
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
        s.ehlo("mx.remote.example")
        s.mail("someone@remote.example")
        code, text = s.rcpt("<postmaster@remote.example>")
        assert (code, text) == (550, b"5.7.1 Delivery Is Not Allowed To This Address")
        code, _ = s.rcpt("<nobody@example.com>")           # other unknown users stay unknown
        assert code == 550
    assert len(Queue(srv.root).all()) == before


def test_without_an_administrator_an_unknown_postmaster_stays_refused(tmp_path):
    """No server.postmaster and no postmaster account or alias: nowhere to deliver."""
    root = make_root(tmp_path, accounts={"bob@example.com": "bob-password-1"}, settings={"queue.offline": True})
    with running_server(root) as server, smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("mx.remote.example")
        s.mail("someone@remote.example")
        assert s.rcpt("<postmaster>")[0] == 550
        assert s.rcpt("<postmaster@example.com>")[0] == 550


def test_a_quickstart_root_takes_postmaster_mail_for_its_account(tmp_path):
    """`mailctl quickstart` makes its account the administrator."""
    from engine import demoroot
    from engine.root import Root
    root = Root(tmp_path / "root")
    demo = demoroot.create(root, "demo.test", "me", "localhost", high_ports=True, any_port=True)
    with running_server(root) as server:
        send(server.ports["smtp"], "<Postmaster>", "hello postmaster")
        send(server.ports["smtp"], "<postmaster@demo.test>", "hello again")
    assert sorted(subjects_in(root, demo.address)) == ["hello again", "hello postmaster"]
