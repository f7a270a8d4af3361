"""No symbolic link inside the mail root is followed (issue 20): a link placed in a Maildir
or in domains/ gives real IMAP and POP3 clients nothing from outside the root, and
nothing is created or changed outside it. Each link is skipped and logged once."""
from __future__ import annotations

import logging
import os
import poplib

import pytest

from engine.errors import NotFound

from helpers_mail import PASSWORD, box, imap, mailserver, message, user  # noqa: F401 - pytest fixtures, used as test arguments

SECRET = b"root:$6$SECRET-HASH-FROM-OUTSIDE:19000:0:99999:7:::\n"
LINK_NAME = "1796300000.M1P1Q1R1.vm:2,S"


def tree(path) -> dict[str, bytes | None]:
    """Every entry under path (contents of files), to prove nothing changed there."""
    out = {}
    for top, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.join(top, d)] = None
        for f in files:
            with open(os.path.join(top, f), "rb") as fh:
                out[os.path.join(top, f)] = fh.read()
    return out


def pop3(srv, address: str) -> poplib.POP3:
    c = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=20)
    c.user(address)
    c.pass_(PASSWORD)
    return c


def fetch_all(srv, address: str, folder: str = "INBOX") -> list[bytes]:
    c = imap(srv, address)
    typ, _ = c.select(folder)
    assert typ == "OK"
    typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
    c.logout()
    return [part[1] for part in data if isinstance(part, tuple)]


def link_warnings(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "symbolic link" in r.getMessage() and name in r.getMessage()]


def test_linked_message_file_is_never_listed_or_read(mailserver, user, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="mailctl.store")
    secret = tmp_path / "shadow"
    secret.write_bytes(SECRET)
    md = box(mailserver, user)
    md.deliver(message("real one"))
    os.symlink(secret, md.path / "cur" / LINK_NAME)
    for _ in range(2):                              # two sessions: the link is logged once
        bodies = fetch_all(mailserver, user)
        assert len(bodies) == 1 and b"real one" in bodies[0]
        assert not any(b"SECRET" in b for b in bodies)
    c = pop3(mailserver, user)
    count, _ = c.stat()
    assert count == 1 and len(c.list()[1]) == 1
    assert b"SECRET" not in b"\n".join(c.retr(1)[1])
    with pytest.raises(poplib.error_proto):
        c.retr(2)
    c.quit()
    assert len(link_warnings(caplog, LINK_NAME)) == 1
    assert secret.read_bytes() == SECRET
    assert os.path.islink(md.path / "cur" / LINK_NAME)        # skipped, not removed


def test_linked_folder_cannot_be_selected_and_creates_nothing(mailserver, user, tmp_path):
    target = tmp_path / "etc"
    target.mkdir()
    (target / "passwd").write_bytes(SECRET)
    before = tree(target)
    md = box(mailserver, user)
    os.symlink(target, md.path / ".Evil")
    c = imap(mailserver, user)
    typ, data = c.select("Evil")
    assert typ == "NO" and b"/" not in data[0]                # no server path in the reply
    assert c.status("Evil", "(MESSAGES)")[0] == "NO"
    assert c.append("Evil", None, None, message("into the link"))[0] == "NO"
    typ, listed = c.list()
    assert typ == "OK" and not any(b"Evil" in line for line in listed)
    assert c.create("Evil")[0] == "NO"                       # the name is taken by the link
    assert c.noop()[0] == "OK"
    c.logout()
    assert tree(target) == before


def test_folder_linked_to_another_users_mailbox_gives_nothing(mailserver, user, tmp_path):
    victim = user
    victim_md = box(mailserver, victim)
    victim_md.deliver(message("victim's private mail"))
    attacker = f"x{user}"
    from helpers_mail import add_users
    add_users(mailserver.root, [attacker.split("@")[0]])
    mailserver.reload()
    os.symlink(victim_md.path, box(mailserver, attacker).path / ".Stolen")
    c = imap(mailserver, attacker)
    assert c.select("Stolen")[0] == "NO"
    assert c.status("Stolen", "(MESSAGES)")[0] == "NO"
    assert c.append("Stolen", None, None, message("planted"))[0] == "NO"
    c.logout()
    bodies = fetch_all(mailserver, victim)
    assert len(bodies) == 1 and b"victim's private mail" in bodies[0]


@pytest.mark.parametrize("sub", ["cur", "new", "tmp"])
def test_linked_cur_new_tmp_of_a_folder(mailserver, user, tmp_path, sub):
    target = tmp_path / "outside"
    target.mkdir()
    (target / "1796300001.M1P1Q1R1.vm:2,").write_bytes(SECRET)
    before = tree(target)
    md = box(mailserver, user)
    folder = md.path / ".Archive"
    os.rename(folder / sub, tmp_path / f"old-{sub}")
    os.symlink(target, folder / sub)
    c = imap(mailserver, user)
    assert c.select("Archive")[0] == "NO"
    assert c.append("Archive", None, None, message("into the linked folder"))[0] == "NO"
    assert c.select("INBOX")[0] == "OK"
    c.logout()
    assert tree(target) == before


@pytest.mark.parametrize("sub", ["new", "tmp"])
def test_linked_new_or_tmp_of_inbox_takes_no_delivery(mailserver, user, tmp_path, sub):
    target = tmp_path / "outside"
    target.mkdir()
    md = box(mailserver, user)
    os.rename(md.path / sub, tmp_path / f"old-{sub}")
    os.symlink(target, md.path / sub)
    c = imap(mailserver, user)
    assert c.append("INBOX", None, None, message("appended"))[0] == "NO"
    assert c.noop()[0] == "OK"
    c.logout()
    with pytest.raises(NotFound):                 # what SMTP, LMTP and pickup deliveries call
        md.deliver(message("delivered"))
    assert not list(target.iterdir())


def test_linked_uidlist_keywords_maildirsize_and_subscriptions_are_not_followed(mailserver, user, tmp_path):
    """Each is treated as missing and written afresh in its place: the link is replaced,
    its target never read nor written."""
    md = box(mailserver, user)
    md.deliver(message("one"))
    targets = {}
    for name in ("dovecot-uidlist", "dovecot-keywords", "maildirsize", "subscriptions"):
        target = tmp_path / f"target-{name}"
        target.write_bytes(b"3 V1 N999\n1 :" + SECRET if name == "dovecot-uidlist" else SECRET)
        os.unlink(md.path / name) if os.path.exists(md.path / name) else None
        os.symlink(target, md.path / name)
        targets[name] = target
    c = imap(mailserver, user)
    assert c.select("INBOX")[0] == "OK"
    assert c.response("UIDVALIDITY")[1] != [b"1"]           # not the target's header
    assert c.uid("STORE", "1:*", "+FLAGS", "(Secretword)")[0] == "OK"
    assert c.append("INBOX", None, None, message("two"))[0] == "OK"
    assert c.subscribe("Archive")[0] == "OK"
    typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    c.logout()
    bodies = [p[1] for p in data if isinstance(p, tuple)]
    assert len(bodies) == 2 and not any(b"SECRET" in b for b in bodies)
    for name, target in targets.items():
        assert target.read_bytes().endswith(SECRET), name
        assert not os.path.islink(md.path / name), name      # replaced by the store's own file
    assert b"Secretword" in (md.path / "dovecot-keywords").read_bytes()


def test_linked_mailbox_directory_gives_nothing(mailserver, user, tmp_path):
    victim_md = box(mailserver, user)
    victim_md.deliver(message("victim's private mail"))
    attacker = f"y{user}"
    from helpers_mail import add_users
    add_users(mailserver.root, [attacker.split("@")[0]])
    mailserver.reload()
    own = box(mailserver, attacker).path
    os.rename(own, tmp_path / "attacker-own")
    os.symlink(victim_md.path, own)
    import imaplib
    c = imaplib.IMAP4("127.0.0.1", mailserver.port("imap"), timeout=20)
    with pytest.raises(imaplib.IMAP4.error) as refused:       # a NO naming the link, no path
        c.login(attacker, PASSWORD)
    assert "symbolic link" in str(refused.value) and "/tmp" not in str(refused.value)
    assert c.noop()[0] == "OK"
    c.logout()
    p = poplib.POP3("127.0.0.1", mailserver.port("pop3"), timeout=20)
    p.user(attacker)
    with pytest.raises(poplib.error_proto) as refused:
        p.pass_(PASSWORD)
    assert b"symbolic link" in refused.value.args[0] and b"/tmp" not in refused.value.args[0]
    p.quit()
    assert len(fetch_all(mailserver, user)) == 1


def test_linked_domain_file_gives_no_account(tmp_path, caplog):
    """A domains/*.toml that is a link is skipped: its accounts (and password hashes)
    do not exist for the server, and config check names it."""
    from conftest import run_mailctl
    from helpers_mail import new_root, running
    caplog.set_level(logging.WARNING, logger="mailctl.store")
    root = new_root(tmp_path / "root")
    outside = tmp_path / "outside"
    outside.mkdir()
    # a complete domain file with an account, made in a second root and linked in
    other = new_root(outside / "r2")
    from helpers_mail import add_domain, add_users, settings_mod
    add_domain(other, settings_mod.load(other.config_file), "evil.test")
    add_users(other, ["mallory"], domain="evil.test")
    os.symlink(other.domain_file("evil.test"), root.domain_file("evil.test"))
    with running(root, protocols=("imap",)) as srv:
        import imaplib
        c = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=20)
        with pytest.raises(imaplib.IMAP4.error):
            c.login("mallory@evil.test", PASSWORD)
        c.logout()
    assert link_warnings(caplog, "evil.test.toml")
    r = run_mailctl(root, "config", "check")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert f"mailctl: warning: {root.domain_file('evil.test')}: symbolic link inside the mail root (not followed)" in err
    assert err.count(str(root.domain_file("evil.test"))) == 1, err      # listed once, not logged again


def test_config_check_lists_every_link_and_still_exits_0(tmp_path):
    """Links are findings (the server skips them), not configuration errors: each is
    a warning line on stderr, and the exit code stays 0. Links under tls/ (certbot) are the
    admin's choice and not listed."""
    from conftest import run_mailctl
    from helpers_mail import add_users, new_root
    root = new_root(tmp_path / "root")
    add_users(root, ["bob"])
    md = root.mail_dir / "example.com" / "bob"
    os.symlink("/etc/shadow", md / "cur" / LINK_NAME)
    os.symlink(tmp_path, md / ".Evil")
    os.rename(root.tls_dir / "cert.pem", tmp_path / "cert.pem")
    os.symlink(tmp_path / "cert.pem", root.tls_dir / "cert.pem")
    r = run_mailctl(root, "config", "check")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert f"mailctl: warning: {md / 'cur' / LINK_NAME}: symbolic link inside the mail root (not followed)\n" in err
    assert f"mailctl: warning: {md / '.Evil'}: symbolic link inside the mail root (not followed)\n" in err
    assert "cert.pem" not in err and "configuration ok" in r.stdout.decode()


def test_two_sessions_at_once_with_a_linked_uidlist(mailserver, user, tmp_path):
    """Two clients append and fetch at once while dovecot-uidlist is a link: the store
    replaces the link with its own file once (under its lock), every message gets its own
    UID, and the link's target is never written."""
    import threading
    md = box(mailserver, user)
    target = tmp_path / "target-uidlist"
    target.write_bytes(b"3 V1 N999\n")
    os.unlink(md.path / "dovecot-uidlist")
    os.symlink(target, md.path / "dovecot-uidlist")
    os.symlink(target, md.path / "cur" / LINK_NAME)
    errors = []

    def client(k: int) -> None:
        try:
            c = imap(mailserver, user)
            for i in range(10):
                assert c.append("INBOX", None, None, message(f"session {k} message {i}"))[0] == "OK"
                assert c.select("INBOX")[0] == "OK"
            c.logout()
        except Exception as e:            # reported below, in the test's thread
            errors.append(e)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    c = imap(mailserver, user)
    c.select("INBOX")
    typ, data = c.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
    c.logout()
    bodies = [p[1] for p in data if isinstance(p, tuple)]
    uids = [p[0].split(b"UID ")[1].split()[0] for p in data if isinstance(p, tuple)]
    assert len(bodies) == 20 and len(set(uids)) == 20
    assert not any(b"N999" in b for b in bodies)
    assert target.read_bytes() == b"3 V1 N999\n"
    assert not os.path.islink(md.path / "dovecot-uidlist")


def test_mailctl_serve_never_serves_a_linked_file(tmp_path):
    """The issue's reproduction against a real `mailctl serve` (two serving processes) and
    TLS clients: bob's FETCH and RETR never return the link's target, SELECT of a linked
    folder is NO and creates nothing in its target, and each serving process logs the
    link once however many sessions list the folder."""
    import imaplib
    from helpers_server import make_root, serve_process, tls_context
    root = make_root(tmp_path, domains=("example.test",), accounts={"bob@example.test": PASSWORD},
                     settings={"server.processes": 2})
    secret = tmp_path / "shadow"
    secret.write_bytes(SECRET)
    evil = tmp_path / "etc"
    evil.mkdir()
    md = root.mail_dir / "example.test" / "bob"
    from engine.maildir import Maildir
    Maildir.for_account(root, "example.test", "bob").deliver(message("the real one"))
    os.symlink(secret, md / "cur" / LINK_NAME)
    os.symlink(evil, md / ".Evil")
    with serve_process(root) as srv:
        for _ in range(6):
            c = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=tls_context(), timeout=20)
            c.login("bob@example.test", PASSWORD)
            assert c.select("INBOX")[0] == "OK"
            typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
            bodies = [p[1] for p in data if isinstance(p, tuple)]
            assert len(bodies) == 1 and b"SECRET" not in bodies[0]
            assert c.select("Evil")[0] == "NO"
            c.logout()
        p = poplib.POP3_SSL("127.0.0.1", srv.ports["pop3s"], context=tls_context(), timeout=20)
        p.user("bob@example.test")
        p.pass_(PASSWORD)
        assert p.stat()[0] == 1 and len(p.list()[1]) == 1
        assert b"SECRET" not in b"\n".join(p.retr(1)[1])
        p.quit()
    assert not list(evil.iterdir())
    log = (root.log_dir / "mailctl.log").read_text()
    logged = log.count(f"{LINK_NAME}: symbolic link inside the mail root (not followed)")
    assert 1 <= logged <= 2, logged                   # once per serving process at most


def test_the_root_itself_may_be_reached_through_a_link(tmp_path):
    """Links above the root are the admin's choice: a root given by a path through a link
    works as usual (delivery, IMAP, config check without warnings)."""
    from conftest import run_mailctl
    from engine.root import Root
    from helpers_mail import add_users, new_root, running
    real = new_root(tmp_path / "real" / "root")
    add_users(real, ["bob"])
    os.symlink(tmp_path / "real", tmp_path / "via-link")
    root = Root(tmp_path / "via-link" / "root")
    from engine.maildir import Maildir
    Maildir.for_account(root, "example.com", "bob").deliver(message("through the link"))
    with running(root, protocols=("imap",)) as srv:
        srv.root = root
        bodies = fetch_all(srv, "bob@example.com")
    assert len(bodies) == 1 and b"through the link" in bodies[0]
    r = run_mailctl(root, "config", "check")
    assert r.returncode == 0 and "symbolic link" not in r.stderr.decode(), r.stderr.decode()


def test_linked_state_file_is_neither_read_nor_written(tmp_path):
    """State files (here an import's journal) are opened without following a link: the
    import stops with one line, and the link's target is untouched."""
    from conftest import run_mailctl
    from helpers_mail import add_users, new_root
    root = new_root(tmp_path / "root")
    add_users(root, ["bob"])
    target = tmp_path / "target"
    target.write_bytes(SECRET)
    journal = root.state_dir / "import" / "example.com" / "bob.log"
    journal.parent.mkdir(parents=True)
    os.symlink(target, journal)
    mbox = tmp_path / "in.mbox"
    mbox.write_bytes(b"From a@example.org Thu Jan  1 00:00:00 2026\nSubject: imported\n\nbody\n")
    r = run_mailctl(root, "import", "mbox", str(mbox), "--account", "bob@example.com")
    err = r.stderr.decode()
    assert r.returncode == 1 and len(err.splitlines()) == 1 and "symbolic link" in err, err
    assert target.read_bytes() == SECRET
