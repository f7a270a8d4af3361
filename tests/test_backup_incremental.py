"""Incremental chains, merging restores into a live root, and the backup CLI."""
from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from engine import directory_edit, passwords
from engine import settings as settings_mod
from engine.backup import create_backup, restore_backup, verify_backup
from engine.backup.destination import list_backups
from engine.directory import Directory
from engine.maildir import Maildir
from engine.root import Root
from conftest import run_cli, run_mailctl
from helpers_backup import PASSWORD, mail_state, make_root, message

SKIP = ("run/", "log/")


def tree(root: Root) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirnames, files in os.walk(root.path):
        rel_dir = os.path.relpath(dirpath, root.path)
        if rel_dir.split("/")[0] in ("run", "log") or rel_dir.endswith("/tmp"):
            continue
        for name in files:
            if name.endswith(".lock"):
                continue
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root.path)] = Path(p).read_bytes()
    return out


@pytest.fixture
def small_root(tmp_path) -> Root:
    return make_root(tmp_path / "root", domains=2, accounts=4, messages=200)


def change_mail(root: Root, step: int) -> None:
    """New mail, flag changes (renames, new/ -> cur/), and expunges."""
    box = Maildir.for_account(root, "d0.example", "user0")
    inbox = box.folder("INBOX")
    for i in range(5):
        box.deliver(message(1000 * step + i, "user0@d0.example"))
    msgs = inbox.sync()
    for m in msgs[:4]:
        inbox.set_flags(m, set(m.flags) ^ {"\\Flagged", "work"})
    inbox.expunge(msgs[4:6])
    Maildir.for_account(root, "d1.example", "user1").deliver(message(5000 + step, "user1@d1.example"),
                                                             folder="Projects/2024/Q1", flags={"\\Seen"})


def test_full_plus_three_incrementals_restores_the_last_tree(small_root, tmp_path):
    dest = tmp_path / "backups"
    full = create_backup(small_root, dest)
    snapshots = []
    for step in range(1, 4):
        change_mail(small_root, step)
        r = create_backup(small_root, dest, incremental=True, archive=(step == 2))
        assert r.kind == "incremental"
        snapshots.append((r, tree(small_root)))
    last, expected = snapshots[-1]
    m = tomllib.loads((last.path / "manifest.toml").read_text())
    assert m["backup"]["parent"] == snapshots[1][0].name
    assert m["tree"]["renamed"] and m["tree"]["deleted"]      # renames and expunges recorded
    # an incremental stores only what changed
    assert last.stored_files < 40 and full.stored_files > 200
    assert verify_backup(last.path).ok
    new = Root(tmp_path / "restored")
    restore_backup(last.path, new)
    assert tree(new) == expected
    # a middle link restores its own point in time
    mid = Root(tmp_path / "mid")
    restore_backup(snapshots[0][0].path, mid)
    assert tree(mid) == snapshots[0][1]
    # losing a link of the chain is reported, not silently skipped
    import shutil
    shutil.rmtree(snapshots[0][0].path)
    report = verify_backup(last.path)
    assert not report.ok and any(snapshots[0][0].name in p for p in report.problems)


def test_restore_one_account_into_live_root_merges(small_root, tmp_path):
    dest = tmp_path / "backups"
    box = Maildir.for_account(small_root, "d0.example", "user0")
    inbox = box.folder("INBOX")
    full = create_backup(small_root, dest)
    before = {k: v for k, v in mail_state(small_root).items() if k[0].startswith("mail/d0.example/user0")}
    # since the backup: new mail, lost mail, newer flags, and a copy of one message under a new name
    new_mail = box.deliver(message(777, "user0@d0.example"))
    msgs = inbox.sync()
    lost = msgs[:5]
    inbox.expunge(lost)
    kept = inbox.sync()[0]
    inbox.set_flags(kept, set(kept.flags) | {"\\Answered"})
    Maildir.for_account(small_root, "d1.example", "user1")
    other_state = {k: v for k, v in mail_state(small_root).items() if k[0].startswith("mail/d1.example/user1")}

    result = restore_backup(full.path, small_root, account="user0@d0.example")
    assert result.mode == "merge"
    assert result.messages_added == 5
    after = {k: v for k, v in mail_state(small_root).items() if k[0].startswith("mail/d0.example/user0")}
    for key in before:
        assert key in after
    assert after[("mail/d0.example/user0", kept.base)][1] == "".join(sorted(set(kept.filename.partition(':2,')[2]) | {"R"}))
    assert any(k[1] == new_mail.path.name.partition(":")[0] for k in after)      # new mail kept
    assert len(after) == len(before) + 1
    uids = [m.uid for m in inbox.sync()]
    assert len(uids) == len(set(uids))
    # the other account was not touched
    assert {k: v for k, v in mail_state(small_root).items() if k[0].startswith("mail/d1.example/user1")} == other_state
    # a second run adds nothing
    again = restore_backup(full.path, small_root, account="user0@d0.example")
    assert again.messages_added == 0 and again.messages_present > 0


def test_merge_skips_same_content_and_bumps_uidvalidity_on_clash(small_root, tmp_path):
    box = Maildir.for_account(small_root, "d0.example", "user0")
    inbox = box.folder("INBOX")
    msgs = inbox.sync()
    full = create_backup(small_root, tmp_path / "b")
    # the same bytes saved again under another name, original lost
    dup = msgs[0]
    data = inbox.read(dup)
    inbox.expunge([dup])
    box.deliver(data)
    # the uidlist rebuilt with the same UIDVALIDITY but numbering from 1: old UIDs now name other mail
    v = inbox.uidvalidity()
    inbox.expunge(inbox.sync()[1:3])
    listing = sorted(os.listdir(inbox.path / "cur") + os.listdir(inbox.path / "new"))
    lines = [f"3 V{v} N{len(listing) + 1}"] + [f"{i} :{n.partition(':')[0]}" for i, n in enumerate(listing, 1)]
    (inbox.path / "dovecot-uidlist").write_text("\n".join(lines) + "\n")
    result = restore_backup(full.path, small_root, account="user0@d0.example")
    assert result.duplicates == 1 and result.messages_added == 2
    assert "mail/d0.example/user0" in result.uidvalidity_bumped
    fresh = Maildir.for_account(small_root, "d0.example", "user0").folder("INBOX")
    assert fresh.uidvalidity() != v
    assert len(fresh.sync()) == len(msgs)


def test_restore_brings_back_a_removed_account_with_its_password(small_root, tmp_path):
    settings = settings_mod.load(small_root.config_file)
    full = create_backup(small_root, tmp_path / "b")
    count = len(Maildir.for_account(small_root, "d1.example", "user3").folder("INBOX").sync())
    directory_edit.remove_account(small_root, settings, "user3@d1.example", purge=True)
    assert Directory.load(small_root, settings).login("user3@d1.example") is None
    result = restore_backup(full.path, small_root, account="user3@d1.example")
    assert result.accounts_added == ["user3@d1.example"]
    acc = Directory.load(small_root, settings).login("user3@d1.example")
    assert acc is not None and passwords.verify(acc.password, PASSWORD)
    assert len(Maildir.for_account(small_root, "d1.example", "user3").folder("INBOX").sync()) == count


def test_cli_backup_is_quiet_on_a_pipe_runs_hooks_and_prunes(small_root, tmp_path):
    hooks = small_root.path / "hooks"
    hooks.mkdir()
    log = tmp_path / "hook.log"
    for event in ("backup-completed", "backup-failed"):
        h = hooks / event
        h.write_text(f'#!/bin/sh\necho "{event} $1 $MAILCTL_BACKUP_STATUS $MAILCTL_BACKUP_SUMMARY" >> {log}\n')
        h.chmod(0o755)
    dest = tmp_path / "b"
    p = run_mailctl(small_root, "backup", "create", "--to", str(dest))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 1 and "verified" in lines[0] and p.stderr == b""
    assert "backup-completed" in log.read_text() and " ok " in log.read_text()
    p = run_mailctl(small_root, "backup", "create", "--to", str(dest), "--incremental", "--archive")
    assert p.returncode == 0, p.stderr
    archive = tmp_path / "one.tar.gz"
    p = run_mailctl(small_root, "backup", "create", "--to", str(archive), "--account", "user0@d0.example")
    assert p.returncode == 0 and archive.is_file()
    r = run_cli(small_root, "backup", "list", "--to", str(dest), "--json")
    rows = json.loads(r.out)
    assert [row["kind"] for row in rows] == ["full", "incremental"]
    assert rows[1]["format"] == "archive"
    assert run_cli(small_root, "backup", "verify", rows[1]["path"]).code == 0
    # a failure: exit 1, one line, and the failed hook runs
    p = run_mailctl(small_root, "backup", "create", "--to", str(dest), "--domain", "nope.example")
    assert p.returncode == 1 and p.stderr.decode().count("\n") == 1
    assert "backup-failed" in log.read_text()
    # dry-run restore writes nothing
    r = run_cli(small_root, "backup", "restore", rows[0]["path"], "--to", str(tmp_path / "dry"), "--dry-run")
    assert r.code == 0 and "would restore" in r.out and not (tmp_path / "dry").exists()
    # prune keeps the newest chain
    create_backup(small_root, dest)
    r = run_cli(small_root, "backup", "prune", "--keep", "1", "--to", str(dest), "--yes")
    assert r.code == 0 and "removed 2 backups" in r.out
    assert len(list_backups(dest)[0]) == 1
    # hostile input: not a backup, a damaged archive
    r = run_cli(small_root, "backup", "verify", str(tmp_path))
    assert r.code == 1 and "not a backup" in r.err
    (tmp_path / "bad").mkdir()
    bad = tmp_path / "bad" / "one.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    r = run_cli(small_root, "backup", "verify", str(bad))
    assert r.code == 1 and "damaged" in (r.err + r.out)


def test_manifest_with_paths_leaving_the_root_is_refused(small_root, tmp_path):
    full = create_backup(small_root, tmp_path / "b")
    manifest = full.path / "manifest.toml"
    text = manifest.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith('"domains/d0.example.toml" = '))
    manifest.write_text(text.replace(line, line.replace('"domains/d0.example.toml"', '"../../evil.toml"')))
    report = verify_backup(full.path)
    assert not report.ok and "unsafe path" in report.problems[0]
    from engine.errors import MailError
    with pytest.raises(MailError, match="unsafe path"):
        restore_backup(full.path, Root(tmp_path / "new"))
    assert not (tmp_path / "evil.toml").exists() and not (tmp_path.parent / "evil.toml").exists()
    r = run_cli(small_root, "backup", "restore", str(full.path), "--to", str(tmp_path / "new"))
    assert r.code == 1 and "unsafe path" in r.err


def test_restore_refuses_unsuitable_targets_and_whole_restore_into_live_root_merges(small_root, tmp_path):
    full = create_backup(small_root, tmp_path / "b", archive=True)
    other = tmp_path / "home"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    r = run_cli(small_root, "backup", "restore", str(full.path), "--to", str(other))
    assert r.code == 1 and "not empty" in r.err and sorted(os.listdir(other)) == ["notes.txt"]
    r = run_cli(small_root, "backup", "restore", str(full.path), "--to", str(tmp_path / "none"),
                "--account", "user0@d0.example")
    assert r.code == 1 and "existing root" in r.err
    scoped = create_backup(small_root, tmp_path / "b", domain="d1.example")
    r = run_cli(small_root, "backup", "restore", str(scoped.path), "--to", str(tmp_path / "fresh"))
    assert r.code == 1 and "holds only d1.example" in r.err and not (tmp_path / "fresh").exists()
    m = tomllib.loads((scoped.path / "manifest.toml").read_text())
    assert all(p.startswith(("domains/d1.example.toml", "mail/d1.example/")) for p in m["files"])
    # the whole backup into the live root it came from: nothing changes, nothing doubles
    state = mail_state(small_root)
    result = restore_backup(full.path, small_root)
    assert result.mode == "merge" and result.messages_added == 0
    assert mail_state(small_root) == state


def test_merge_maps_keyword_letters_to_the_live_folders_keywords(small_root, tmp_path):
    box = Maildir.for_account(small_root, "d0.example", "user0")
    inbox = box.folder("INBOX")
    with_kw = [m for m in inbox.sync() if m.flags & {"$Junk", "work"}]
    assert with_kw
    expected = {m.base: set(m.flags) for m in with_kw}
    full = create_backup(small_root, tmp_path / "b")
    inbox.expunge(with_kw)
    # the live folder's letters now mean something else
    assert not any(m.flags & {"$Junk", "work"} for m in inbox.sync())
    (inbox.path / "dovecot-keywords").write_text("0 urgent\n")
    restore_backup(full.path, small_root, account="user0@d0.example")
    back = {m.base: set(m.flags) for m in Maildir.for_account(small_root, "d0.example", "user0").folder("INBOX").sync()
            if m.base in expected}
    assert back == expected
