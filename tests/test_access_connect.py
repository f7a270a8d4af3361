"""Access lists at connect (engine/access/gate.py): allow/deny entries per listener with
expiry, manual bans, ban exemptions. A real server, real clients (smtplib, imaplib,
poplib) connecting from their own loopback addresses (127.0.4x.y) so entries and bans
of one test never touch another."""
from __future__ import annotations

import imaplib
import poplib
import smtplib
import time

import pytest

from conftest import run_cli
from engine.access.entries import AccessEntries, make_entry
from engine.settings import LISTENERS
from helpers_server import IMAP4From, POP3From, make_root, running_server

BOB = "bob@example.com"
SMTP_DENIED = b"5.7.1 Connections from your address are not accepted"
IMAP_DENIED = b"[CONTACTADMIN] Connections from your address are not accepted"
POP3_DENIED = b"-ERR [SYS/PERM] Connections from your address are not accepted"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("access"), accounts={BOB: "bob-password-1"}, settings={
        "queue.offline": True, "auth.ban_after_failures": 2, "auth.allow_plaintext": True, "access.ban_exempt": ["127.0.49.0/24"]})
    with running_server(root) as server:
        yield server


def smtp_greeting(srv, ip: str, listener: str = "smtp") -> tuple[int, bytes]:
    try:
        s = smtplib.SMTP("127.0.0.1", srv.ports[listener], timeout=10, source_address=(ip, 0))
    except smtplib.SMTPConnectError as e:
        return e.smtp_code, e.smtp_error
    code, text = s.noop()
    s.quit()
    return code, text


def imap_greeting(srv, ip: str, listener: str = "imap") -> bytes:
    try:
        c = IMAP4From(ip, srv.ports[listener])
    except imaplib.IMAP4.error as e:           # a BYE greeting
        return str(e).encode()
    c.logout()
    return b"OK"


def pop3_greeting(srv, ip: str) -> bytes:
    try:
        c = POP3From(ip, srv.ports["pop3"])
    except poplib.error_proto as e:
        return e.args[0]
    c.quit()
    return b"+OK"


def add(root, *args, **kw):
    entry = make_entry(*args, known_listeners=tuple(LISTENERS), **kw)
    return AccessEntries(root).add(entry)


def test_a_deny_entry_refuses_its_listener_only_in_each_protocol_s_words(srv):
    root = srv.root
    r = run_cli(root, "access", "add", "deny", "127.0.41.0/24", "--listener", "smtp", "--listener", "pop3",
                "--reason", "test")
    assert r.code == 0, r.err
    code, text = smtp_greeting(srv, "127.0.41.7")
    assert (code, text) == (554, SMTP_DENIED)
    assert pop3_greeting(srv, "127.0.41.7") == POP3_DENIED
    # listeners not named are open
    assert imap_greeting(srv, "127.0.41.7") == b"OK"
    assert smtp_greeting(srv, "127.0.41.7", "submission")[0] == 250
    # other addresses are not touched
    assert smtp_greeting(srv, "127.0.42.7")[0] == 250
    assert srv.runtime.counters.get("access_refused_connect", 0) >= 2
    assert run_cli(root, "access", "remove", "127.0.41.0/24").code == 0
    assert smtp_greeting(srv, "127.0.41.7")[0] == 250


def test_imap_denied_gets_a_bye_greeting(srv):
    add(srv.root, "deny", "127.0.43.5", listeners=["imap"])
    assert IMAP_DENIED in imap_greeting(srv, "127.0.43.5")
    assert smtp_greeting(srv, "127.0.43.5")[0] == 250


def test_the_narrowest_network_decides_and_a_tie_denies(srv):
    add(srv.root, "deny", "127.0.44.0/24", listeners=["smtp"])
    add(srv.root, "allow", "127.0.44.16/28", listeners=["smtp"])
    add(srv.root, "deny", "127.0.44.20", listeners=["smtp"])
    assert smtp_greeting(srv, "127.0.44.3")[0] == 554          # only the /24 holds it
    assert smtp_greeting(srv, "127.0.44.17")[0] == 250         # the /28 allow is narrower
    assert smtp_greeting(srv, "127.0.44.20")[0] == 554         # a /32 deny inside the allow
    add(srv.root, "allow", "127.0.44.20", listeners=["smtp"])
    assert smtp_greeting(srv, "127.0.44.20")[0] == 554         # allow and deny of one network: deny
    # an allow entry on its own changes nothing for the others
    add(srv.root, "allow", "127.0.45.1")
    assert smtp_greeting(srv, "127.0.45.2")[0] == 250


def test_an_entry_ends_when_it_expires(srv):
    add(srv.root, "deny", "127.0.46.1", expires=time.time() + 1.5)
    assert smtp_greeting(srv, "127.0.46.1")[0] == 554
    assert pop3_greeting(srv, "127.0.46.1") == POP3_DENIED
    time.sleep(1.7)
    assert smtp_greeting(srv, "127.0.46.1")[0] == 250
    assert pop3_greeting(srv, "127.0.46.1") == b"+OK"
    # the next change sweeps it from the file
    add(srv.root, "deny", "127.0.46.200")
    assert [e.value for e in AccessEntries(srv.root).all() if e.value.startswith("127.0.46.")] == ["127.0.46.200"]


def test_a_manual_ban_refuses_every_listener_and_is_lifted_by_ban_remove(srv):
    r = run_cli(srv.root, "ban", "add", "127.0.47.1", "--minutes", "10")
    assert r.code == 0 and "127.0.47.1 banned for 10 minutes" in r.out, r.err
    assert smtp_greeting(srv, "127.0.47.1") == (554, SMTP_DENIED)
    assert smtp_greeting(srv, "127.0.47.1", "submission")[0] == 554
    assert IMAP_DENIED in imap_greeting(srv, "127.0.47.1")
    assert pop3_greeting(srv, "127.0.47.1") == POP3_DENIED
    listed = run_cli(srv.root, "ban", "list", "--json")
    assert '"manual": true' in listed.out and "127.0.47.1" in listed.out
    assert run_cli(srv.root, "ban", "remove", "127.0.47.1").code == 0
    assert smtp_greeting(srv, "127.0.47.1")[0] == 250


def _fail_logins(srv, ip: str, n: int) -> None:
    for _ in range(n):
        try:
            c = IMAP4From(ip, srv.ports["imap"])
        except imaplib.IMAP4.error:
            return
        try:
            c.login(BOB, "wrong-password")
        except imaplib.IMAP4.error:
            pass
        finally:
            try:
                c.logout()
            except (imaplib.IMAP4.abort, OSError):
                pass


def test_an_exempt_address_is_never_banned_automatically_but_a_manual_ban_holds(srv):
    _fail_logins(srv, "127.0.48.1", 4)               # not exempt: banned after 2
    assert b"temporarily banned" in imap_greeting(srv, "127.0.48.1")
    _fail_logins(srv, "127.0.49.1", 4)               # in access.ban_exempt
    assert imap_greeting(srv, "127.0.49.1") == b"OK"
    assert not srv.runtime.bans.is_banned("127.0.49.1")
    assert "127.0.49.1" not in [b["ip"] for b in srv.runtime.bans.list()]      # its failures not even counted
    # a ban made before the exemption (a file from an earlier configuration) is ignored too
    srv.runtime.bans.ban("127.0.49.2", 10, "old automatic ban")
    assert imap_greeting(srv, "127.0.49.2") == b"OK"
    assert run_cli(srv.root, "ban", "add", "127.0.49.3").code == 0
    assert IMAP_DENIED in imap_greeting(srv, "127.0.49.3")
