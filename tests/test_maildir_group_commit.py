"""Delivery commits grouped per folder: concurrent commits share one directory fsync and
one uidlist append, yet each gets its own UID, counts in the quota, and a failed commit
leaves no copy visible."""
from __future__ import annotations

import threading

import pytest

from engine.maildir import staging as md_staging
from engine.maildir import Maildir

MSG = b"Subject: hi\n\nbody\n"


@pytest.fixture
def md(tmp_path):
    m = Maildir(tmp_path / "alice")
    m.create(folders=[])
    return m


def test_concurrent_commits_get_distinct_uids_and_are_counted(md):
    staged = [md.stage(MSG) for _ in range(40)]
    uids: list[int] = []
    barrier = threading.Barrier(8)

    def commit(items):
        barrier.wait()
        for item in items:
            uids.append(item.commit().uid)

    threads = [threading.Thread(target=commit, args=(staged[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(uids) == list(range(1, 41))
    records = (md.path / "dovecot-uidlist").read_text().splitlines()[1:]
    assert len(records) == 40
    assert md.quota_usage() == (40 * len(MSG), 40)
    assert sorted(m.uid for m in md.folder("INBOX").sync()) == list(range(1, 41))


def test_commit_without_uid_leaves_it_to_sync(md):
    first = md.stage(MSG, assign_uid=False).commit()
    assert first.uid == 0 and first.path.exists()
    assert len((md.path / "dovecot-uidlist").read_text().splitlines()) == 1
    assert md.deliver(MSG).uid == 1         # an eager delivery meanwhile
    msgs = md.folder("INBOX").sync()
    assert sorted(m.uid for m in msgs) == [1, 2]
    assert md.quota_usage() == (2 * len(MSG), 2)


def test_failed_directory_fsync_leaves_no_copy(md, monkeypatch):
    def broken(path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(md_staging, "fsync_dir", broken)
    item = md.stage(MSG)
    with pytest.raises(OSError):
        item.commit()
    monkeypatch.undo()
    assert list((md.path / "new").iterdir()) == []
    assert list((md.path / "tmp").iterdir()) == []
    assert md.folder("INBOX").sync() == []
    assert md.deliver(MSG).uid == 1          # the folder still works
