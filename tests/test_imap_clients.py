"""Real clients from Debian against our IMAP and POP3 servers: mutt (IMAPS and POP3S,
batch mode in a pseudo-terminal), mbsync (isync), fetchmail and offlineimap."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from helpers_mail import PASSWORD, box, mailserver, message, user  # noqa: F401 - pytest fixtures, used as test arguments


def run(cmd, **kw):
    """Run a client with a HOME of its own, so nothing of the real home directory (state,
    first-run prompts) takes part."""
    kw.setdefault("timeout", 90)
    kw.setdefault("env", {**os.environ, "HOME": tempfile.mkdtemp(prefix="client-home-")})
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def muttrc(tmp: Path, srv, address: str) -> Path:
    rc = tmp / "muttrc"
    rc.write_text(f"""set certificate_file={srv.root.path / 'tls/cert.pem'}
set ssl_verify_host=no
set ssl_force_tls=yes
set imap_user={address}
set imap_pass={PASSWORD}
set pop_user={address}
set pop_pass={PASSWORD}
set confirmcreate=no
set confirmappend=no
set mbox_type=mbox
set header_cache=""
set move=no
""")
    return rc


def mutt_batch(rc: Path, url: str, keys: str) -> str:
    """mutt needs a terminal even when driven by 'push'; script(1) gives it a pty."""
    cmd = f"mutt -n -F {rc} -f '{url}' -e 'push {keys}'"
    # a HOME of its own, with the Mail folder mutt asks to create on its first run
    home = rc.parent / "home"
    (home / "Mail").mkdir(parents=True, exist_ok=True)
    r = run(["script", "-qc", cmd, "/dev/null"], env={**os.environ, "TERM": "vt100", "HOME": str(home)})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    return r.stdout


def fill(srv, address, n=3):
    md = box(srv, address)
    for i in range(n):
        md.deliver(message(f"hello {i}"))
    return md


def test_mutt_reads_inbox_over_imaps_and_pop3s(mailserver, user, tmp_path):
    fill(mailserver, user)
    rc = muttrc(tmp_path, mailserver, user)
    out = tmp_path / "out.mbox"
    screen = mutt_batch(rc, f"imaps://{user}@127.0.0.1:{mailserver.port('imaps')}/INBOX",
                        f"<copy-message>{out}<enter><quit>")
    assert "Msgs:3" in screen
    assert "Subject: hello 0" in out.read_text()
    out2 = tmp_path / "out2.mbox"
    screen = mutt_batch(rc, f"pops://{user}@127.0.0.1:{mailserver.port('pop3s')}/",
                        f"<copy-message>{out2}<enter><quit>")
    assert "Msgs:3" in screen and "Subject: hello" in out2.read_text()


def _snapshot(*dirs: Path) -> dict:
    out = {}
    for d in dirs:
        for p in sorted(d.rglob("*")):
            if p.is_file() and not p.name.endswith(".lock") and ".mbsyncstate" not in p.name \
                    and p.name not in ("dovecot-uidlist", "maildirsize"):
                out[str(p.relative_to(d.parent))] = p.read_bytes()
    return out


def test_mbsync_syncs_nested_folders_and_flags_both_ways(mailserver, user, tmp_path):
    md = fill(mailserver, user, 2)
    md.create_folder("Projects/Sub")
    md.deliver(message("nested"), "Projects/Sub", flags=["\\Flagged"])
    local = tmp_path / "local"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount test
Host 127.0.0.1
Port {mailserver.port('imaps')}
User {user}
Pass {PASSWORD}
SSLType IMAPS
CertificateFile {mailserver.root.path / 'tls/cert.pem'}
SystemCertificates no

IMAPStore remote
Account test

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")

    def sync():
        r = run(["mbsync", "-c", str(rc), "-a"])
        assert r.returncode == 0, r.stdout + r.stderr

    sync()
    nested = list((local / "Projects/Sub").glob("*/*"))
    assert len(nested) == 1 and nested[0].name.endswith(",F")
    assert len(list((local / "INBOX").glob("*/*"))) == 2
    # local: mark one read and add a message; remote: flag one
    first = sorted((local / "INBOX" / "new").iterdir())[0]
    first.rename(local / "INBOX" / "cur" / (first.name + "S"))
    (local / "Sent" / "cur" / "1700000000.1_1.host:2,S").write_bytes(message("sent locally"))
    inbox = md.folder("INBOX")
    second = inbox.sync()[1]
    inbox.set_flags(second, {"\\Flagged"})
    sync()
    flags = {m.uid: m.flags for m in inbox.sync()}
    assert "\\Seen" in flags[1] and flags[2] == {"\\Flagged"}
    sent = md.folder("Sent").sync()
    assert len(sent) == 1 and sent[0].flags == {"\\Seen"}
    assert any(p.name.endswith("F") for p in (local / "INBOX" / "cur").iterdir())
    before = _snapshot(local, md.path)
    sync()
    assert _snapshot(local, md.path) == before   # a second run changes nothing


def test_fetchmail_downloads_and_deletes_over_pop3(mailserver, user, tmp_path):
    md = fill(mailserver, user, 3)
    outdir = tmp_path / "fm"
    outdir.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f"""poll 127.0.0.1 with protocol POP3 and port {mailserver.port('pop3s')}:
  user "{user}" there with password "{PASSWORD}" is "root" here
  ssl no sslcertck
  nokeep
  mda "/bin/sh -c 'cat > {outdir}/msg.$$'"
""")
    rc.chmod(0o600)
    r = run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog", "-i", str(tmp_path / "ids")],
            env={**os.environ, "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stdout + r.stderr
    got = sorted(p.read_text() for p in outdir.iterdir())
    assert len(got) == 3 and all("Subject: hello" in g for g in got)
    assert md.folder("INBOX").sync() == []


def test_offlineimap_syncs_the_account(mailserver, user, tmp_path):
    md = fill(mailserver, user, 2)
    md.create_folder("Projects/Sub")
    md.deliver(message("nested"), "Projects/Sub")
    cert = mailserver.root.path / "tls/cert.pem"
    fp = run(["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"]).stdout
    fp = fp.strip().split("=", 1)[1].replace(":", "").lower()
    rc = tmp_path / "rc"
    rc.write_text(f"""[general]
accounts = test
metadata = {tmp_path}/meta
ui = quiet

[Account test]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {tmp_path}/mail

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {mailserver.port('imaps')}
remoteuser = {user}
remotepass = {PASSWORD}
ssl = yes
cert_fingerprint = {fp}
ssl_version = tls1_2
""")
    r = run(["offlineimap", "-c", str(rc), "-o"], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    mail = tmp_path / "mail"
    assert len(list((mail / "INBOX").glob("*/*"))) == 2
    assert len(list((mail / "Projects.Sub").glob("*/*"))) == 1
    assert (mail / "Sent").is_dir()
