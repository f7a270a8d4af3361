"""Backup while mail arrives and flags change; restore into a new root; verify; damage."""
from __future__ import annotations

import os
from collections import Counter

import pytest

from engine.backup import create_backup, restore_backup, verify_backup
from engine.root import Root
from helpers_backup import LoadGenerator, mail_state, make_root


def accounts_of(root: Root) -> list[tuple[str, str]]:
    return sorted((d.name, a.name) for d in root.mail_dir.iterdir() for a in d.iterdir())


def message_files(root: Root) -> Counter:
    """(folder, base) -> number of files: a message taken twice would count 2."""
    c = Counter()
    for dirpath, _, files in os.walk(root.mail_dir):
        if os.path.basename(dirpath) in ("cur", "new"):
            folder = os.path.relpath(os.path.dirname(dirpath), root.path)
            for name in files:
                c[(folder, name.partition(":")[0])] += 1
    return c


@pytest.fixture(scope="module")
def big_root(tmp_path_factory) -> Root:
    return make_root(tmp_path_factory.mktemp("big") / "root", domains=3, accounts=50, messages=20_000)


def test_round_trip_20000_messages_under_load(big_root, tmp_path):
    before = mail_state(big_root)
    assert len(before) == 20_000
    with LoadGenerator(big_root, accounts_of(big_root)[:10]) as load:
        result = create_backup(big_root, tmp_path / "backups")
    assert not load.errors, load.errors
    assert load.delivered > 0 and load.flag_changes > 0
    assert result.verified and result.kind == "full"
    assert result.path.parent == tmp_path / "backups" and (result.path / "manifest.toml").is_file()

    new = Root(tmp_path / "restored")
    restored = restore_backup(result.path, new)
    assert restored.mode == "fresh"
    after = mail_state(new)
    for key, (digest, flags, mtime) in before.items():
        assert key in after, f"missing after restore: {key}"
        a_digest, a_flags, a_mtime = after[key]
        assert a_digest == digest and a_mtime == mtime, key
        if key not in load.touched:
            assert a_flags == flags, key
    # nothing doubled: one file per message, also for those renamed during the backup
    assert max(message_files(new).values()) == 1
    # only messages that exist(ed) in the live root came along
    live_now = mail_state(big_root)
    assert set(after) <= set(live_now) | set(before)
    # the restored root is a working root: same accounts, mail countable by the store
    assert sorted(p.name for p in new.domains_dir.iterdir()) == sorted(p.name for p in big_root.domains_dir.iterdir())
    assert (new.dkim_dir / "d0.example.s1.key").is_file() and (new.tls_dir / "key.pem").is_file()
    from engine.maildir import Maildir
    d, local = accounts_of(new)[20]
    inbox = Maildir.for_account(new, d, local).folder("INBOX")
    backup_uidlist = (result.path / "files" / "mail" / d / local / "dovecot-uidlist").read_text()
    assert (new.mail_dir / d / local / "dovecot-uidlist").read_text() == backup_uidlist   # UIDs kept
    assert len(inbox.sync()) == sum(1 for (f, _) in after if f == f"mail/{d}/{local}")

    # the manifest: counts per account and folder, version of the source
    import tomllib
    manifest = tomllib.loads((result.path / "manifest.toml").read_text())
    assert manifest["backup"]["source_root"] == str(big_root.path)
    assert manifest["backup"]["mailctl_version"]
    assert sum(sum(f.values()) for f in manifest["counts"].values()) == result.messages >= 20_000
    assert "Projects/2024/Q1" in manifest["counts"][f"{d}/{local}"]

    assert verify_backup(result.path).ok
    # a byte changed in the backup (the file replaced: message files are hard links of the root's)
    victim_rel = next(p for p in manifest["files"] if "/.Projects.2024.Q1/cur/" in p)
    victim = result.path / "files" / victim_rel
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.unlink()
    victim.write_bytes(bytes(data))
    report = verify_backup(result.path)
    assert not report.ok
    assert any(victim_rel in p and "damaged" in p for p in report.problems), report.problems
    # a missing file is named too
    (result.path / "files" / "domains" / "d1.example.toml").unlink()
    report = verify_backup(result.path)
    assert any("missing domains/d1.example.toml" in p for p in report.problems)
    # and a damaged backup is refused by restore before anything is written
    from engine.errors import MailError
    with pytest.raises(MailError, match="damaged"):
        restore_backup(result.path, Root(tmp_path / "never"))
    assert not (tmp_path / "never").exists()
