"""Backups and the root's secrets are for their owner alone whatever the umask: a backup
holds the DKIM and TLS private keys, every password hash and all mail (issue 20)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSWORD
from engine.root import Root

CLI = [sys.executable, "-m", "mailctl"]


def mailctl_umask(root: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    """A real mailctl subprocess started with umask 022 (the usual default of a shell)."""
    return subprocess.run([*CLI, "--root", str(root), *args], input=input, capture_output=True, timeout=120,
                          preexec_fn=lambda: os.umask(0o022))


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def root022(open_tmp_path, default_mail_user) -> Root:
    root = open_tmp_path / "mailroot"       # run as root, init gives it to the mail user
    for args, stdin in [(("init", "--hostname", "mail.example.test", "--high-ports"), None),
                        (("domain", "add", "example.test"), None),
                        (("account", "add", "bob@example.test", "--password-stdin"), PASSWORD.encode()),
                        (("dkim", "keygen", "example.test"), None)]:
        r = mailctl_umask(root, *args, input=stdin)
        assert r.returncode == 0, r.stderr.decode()
    r = mailctl_umask(root, "deliver", "bob@example.test", "-", input=b"Subject: hi\r\n\r\nbody\r\n")
    assert r.returncode == 0, r.stderr.decode()
    return Root(root)


def backup_place(root: Root) -> Path:
    """A folder beside the root that its owner may write in: backups run as that user."""
    place = root.path.parent / "out"
    place.mkdir(exist_ok=True)
    st = os.stat(root.path)
    os.chown(place, st.st_uid, st.st_gid)
    return place


def test_secrets_in_the_root_are_0600_under_umask_022(root022):
    assert mode(root022.tls_dir / "key.pem") == 0o600
    [key] = root022.dkim_dir.glob("example.test.*.key")
    assert mode(key) == 0o600
    assert mode(root022.domain_file("example.test")) == 0o600      # password hashes
    assert mode(root022.config_file) == 0o600


@pytest.mark.parametrize("form", ["archive", "directory"])
def test_backup_is_private_under_umask_022(root022, form):
    tmp_path = backup_place(root022)
    dest = tmp_path / "backups"          # made by the backup: 0700
    r = mailctl_umask(root022.path, "backup", "create", "--to", str(dest), *(["--archive"] if form == "archive" else []))
    assert r.returncode == 0, r.stderr.decode()
    assert mode(dest) == 0o700
    [made] = [p for p in dest.iterdir() if not p.name.startswith(".")]
    if form == "archive":
        assert made.name.endswith(".tar.gz") and mode(made) == 0o600
        listing = subprocess.run(["tar", "-tvzf", str(made)], capture_output=True, text=True, check=True).stdout
        perms = {line.split()[0] for line in listing.splitlines()}
        assert perms <= {"drwx------", "-rw-------"}, perms
    else:
        paths = [made, *made.rglob("*")]
        assert any(p.name == "key.pem" for p in paths)
        for p in paths:
            assert mode(p) == (0o700 if p.is_dir() else 0o600), (p, oct(mode(p)))


def test_a_message_readable_by_others_is_copied_private_not_linked(root022):
    tmp_path = backup_place(root022)
    """A message file another tool left 0644 is copied 0600 into the backup: linking it would
    keep its mode (and chmod of the link would change the live file)."""
    [msg] = (root022.mail_dir / "example.test" / "bob" / "new").iterdir()
    os.chmod(msg, 0o644)
    r = mailctl_umask(root022.path, "backup", "create", "--to", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr.decode()
    [copy] = (tmp_path / "b").glob(f"*/files/mail/example.test/bob/new/{msg.name}")
    assert mode(copy) == 0o600 and mode(msg) == 0o644
    assert os.stat(copy).st_ino != os.stat(msg).st_ino


@pytest.mark.parametrize("form", ["archive", "directory"])
def test_verify_warns_about_a_backup_others_can_read(root022, form):
    tmp_path = backup_place(root022)
    dest = tmp_path / "backups"
    r = mailctl_umask(root022.path, "backup", "create", "--to", str(dest), *(["--archive"] if form == "archive" else []))
    assert r.returncode == 0, r.stderr.decode()
    [made] = [p for p in dest.iterdir() if not p.name.startswith(".")]
    r = mailctl_umask(root022.path, "backup", "verify", str(made))
    assert r.returncode == 0 and r.stderr == b"", r.stderr.decode()
    exposed = made if form == "archive" else made / "files" / "tls"
    os.chmod(exposed, 0o644 if form == "archive" else 0o755)
    r = mailctl_umask(root022.path, "backup", "verify", str(made))
    err = r.stderr.decode()
    assert r.returncode == 0, err                   # intact: a warning, not a failure
    assert len(err.splitlines()) == 1 and "warning" in err and "open to other users" in err, err
    assert "verified" in r.stdout.decode()
