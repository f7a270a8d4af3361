"""One rule for folder names (engine/foldernames.py), used by the store, IMAP, the CLI,
importers and the backup (issue 20): no IMAP user can stop every backup of the server
with a folder name, and a folder some tool made with an odd name is reported, still
served and still backed up."""
from __future__ import annotations

import json
import tarfile

import pytest

from conftest import run_mailctl
from engine.backup.manifest import Manifest, safe_path
from helpers_mail import box, imap, mailserver, message, user  # noqa: F401 - pytest fixtures, used as test arguments


def backup(root, dest, *extra):
    return run_mailctl(root, "backup", "create", "--to", str(dest), *extra, timeout=120)


def test_imap_create_with_a_backslash_is_refused_and_backups_keep_working(mailserver, user, tmp_path):
    c = imap(mailserver, user)
    typ, data = c.create('"a\\\\b"')                      # the quoted string "a\\b": the name a\b
    assert typ == "NO" and b"backslash" in data[0] and b"/" not in data[0].split(b"'")[0]
    assert c.create("Projects")[0] == "OK"
    typ, data = c.rename("Projects", '"x\\\\y"')
    assert typ == "NO" and b"backslash" in data[0]
    assert c.noop()[0] == "OK"
    typ, listed = c.list()
    c.logout()
    assert not any(b"\\\\" in line.split(b'"/"')[-1] for line in listed)
    assert not list(box(mailserver, user).path.glob(".*\\*"))
    r = backup(mailserver.root, tmp_path / "b", "--archive")
    assert r.returncode == 0, r.stderr.decode()


def test_cli_uses_the_same_rule(mailserver, user):
    r = run_mailctl(mailserver.root, "mailbox", "create", user, "a\\b")
    err = r.stderr.decode()
    assert r.returncode == 1 and len(err.splitlines()) == 1 and "backslash" in err, err
    r = run_mailctl(mailserver.root, "mailbox", "create", user, "Plain")
    assert r.returncode == 0, r.stderr.decode()
    r = run_mailctl(mailserver.root, "mailbox", "rename", user, "Plain", "p\\q")
    assert r.returncode == 1 and "backslash" in r.stderr.decode()


def test_existing_odd_folder_is_reported_served_and_backed_up(mailserver, user, tmp_path):
    """A folder made on disk as '.a\\b' (by an older version, or another tool)."""
    md = box(mailserver, user)
    odd = md.path / ".a\\b"
    for sub in ("cur", "new", "tmp"):
        (odd / sub).mkdir(parents=True, mode=0o700)
    name = "1796300000.M1P1Q1R1.vm:2,S"
    data = b"Subject: odd\n\nkept in the odd folder\n"
    (odd / "cur" / name).write_bytes(data)
    r = run_mailctl(mailserver.root, "config", "check")
    assert r.returncode == 0, r.stderr.decode()
    assert f"mailctl: warning: {odd}: folder name: " in r.stderr.decode() and "backslash" in r.stderr.decode()
    # still served: the user can see it and rename it away
    c = imap(mailserver, user)
    typ, listed = c.list()
    assert any(line.endswith(b'"a\\\\b"') or line.endswith(b"a\\b") for line in listed), listed
    assert c.select('"a\\\\b"')[0] == "OK"
    c.logout()
    for form in ("directory", "archive"):
        dest = tmp_path / form
        r = backup(mailserver.root, dest, *(["--archive"] if form == "archive" else []))
        assert r.returncode == 0, r.stderr.decode()
        assert "a\\b" in r.stderr.decode() and "backed up" in r.stderr.decode()
        [made] = [p for p in dest.iterdir() if not p.name.startswith(".")]
        rel = f"mail/example.com/{user.split('@')[0]}/.a\\b/cur/{name}"
        if form == "archive":
            with tarfile.open(made) as tar:
                assert any(m.name.endswith(f"files/{rel}") for m in tar.getmembers())
        else:
            assert (made / "files" / rel).read_bytes() == data
        r = run_mailctl(mailserver.root, "backup", "verify", str(made))
        assert r.returncode == 0, r.stderr.decode()


@pytest.mark.parametrize("path", ["mail/d/l/.a\\b/cur/1.M1:2,S", "mail/d/l/.caf&AOk-/new/x", "mail/d/l/.a b/cur/x"])
def test_verifier_accepts_any_name_the_store_could_write(path):
    assert safe_path(path)


@pytest.mark.parametrize("path", ["../x", "mail/../../etc/passwd", "/etc/passwd", "mail/a\0b", "mail//x", "mail/./x"])
def test_verifier_still_refuses_paths_that_leave_the_backup(path):
    assert not safe_path(path)
    key = json.dumps(path)                      # NUL written as \u0000, as the manifest does
    text = (f'[backup]\nname = "b"\nkind = "full"\ncreated = 1.0\n[files]\n'
            f'{key} = {{ size = 1, sha256 = "{"0" * 64}", mtime = 1.0, mode = 384, src = "b" }}\n')
    with pytest.raises(Exception, match="unsafe path"):
        Manifest.parse(text)


def test_importer_uses_the_same_rule(mailserver, user, tmp_path):
    """An import into a folder named with a backslash is refused with the rule's reason;
    no such folder is made. The same import into a plain name works."""
    mbox = tmp_path / "in.mbox"
    mbox.write_bytes(b"From a@example.org Thu Jan  1 00:00:00 2026\nSubject: imported\n\nbody\n")
    r = run_mailctl(mailserver.root, "import", "mbox", str(mbox), "--account", user, "--folder", "imp\\orted")
    assert r.returncode != 0 and "backslash" in (r.stdout + r.stderr).decode(), (r.stdout + r.stderr).decode()
    assert not list(box(mailserver, user).path.glob(".imp*"))
    r = run_mailctl(mailserver.root, "import", "mbox", str(mbox), "--account", user, "--folder", "Imported")
    assert r.returncode == 0, r.stderr.decode()
    assert (box(mailserver, user).path / ".Imported").is_dir()
