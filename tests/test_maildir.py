import multiprocessing
import os
import re
import time
from pathlib import Path

import pytest

from engine.maildir import folder as md_folder
from engine.maildir import names as md_names
from engine.maildir import sync as md_sync
from engine.maildir import uidlist as md_uidlist
from engine.errors import AlreadyExists, InvalidInput, MailError, NotFound, QuotaExceeded
from engine.maildir import DEFAULT_FOLDERS, Maildir
from engine.root import Root

MSG = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"
LF_MSG = b"From: a@example.test\nSubject: lf\n\nline1\nline2\n"
NAME_RE = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)R[0-9a-f]+\.[^,/]+,S=(\d+),W=(\d+)$")


@pytest.fixture
def md(tmp_path):
    m = Maildir.for_account(Root(tmp_path), "example.test", "alice")
    m.create()
    return m


def uidlist_lines(folder_path: Path) -> list[str]:
    return (folder_path / "dovecot-uidlist").read_text().splitlines()


def record_patching(monkeypatch) -> list[bool]:
    """A list that gets, for each sync from now on, whether it patched its last result."""
    patched: list[bool] = []
    original = md_sync.patch_last_sync

    def recording(*args):
        result = original(*args)
        patched.append(result is not md_sync.Fallback.FULL_SYNC)
        return result
    monkeypatch.setattr(md_sync, "patch_last_sync", recording)
    return patched


# -- layout -------------------------------------------------------------------

def test_create_layout(md, tmp_path):
    assert md.path == tmp_path / "mail" / "example.test" / "alice"
    for sub in ("cur", "new", "tmp"):
        assert (md.path / sub).is_dir()
    for name in DEFAULT_FOLDERS:
        folder_dir = md.path / f".{name}"
        assert (folder_dir / "maildirfolder").is_file()
        assert (folder_dir / "maildirfolder").stat().st_size == 0
        assert all((folder_dir / s).is_dir() for s in ("cur", "new", "tmp"))
    assert md.subscriptions() == DEFAULT_FOLDERS
    assert (md.path / "subscriptions").read_text().startswith("V\t2\n\n")
    assert (md.path / "maildirsize").read_text().splitlines()[0] == "0S,0C"
    infos = md.list_folders()
    assert infos[0].name == "INBOX"
    assert {i.name: i.special_use for i in infos[1:]} == {n: "\\" + n for n in DEFAULT_FOLDERS}
    md.create()  # idempotent
    assert [i.name for i in md.list_folders()] == [i.name for i in infos]


def test_uidvalidity_unique_and_growing(md):
    values = [md.folder(n).uidvalidity() for n in ["INBOX", *DEFAULT_FOLDERS]]
    assert len(set(values)) == len(values)
    assert md.create_folder("Later").uidvalidity() > max(values)
    assert int((md.path / "dovecot-uidvalidity").read_text(), 16) == md.folder("Later").uidvalidity()


# -- delivery -----------------------------------------------------------------

def test_deliver_names_sizes_and_fsync(md, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                         real_fsync(fd))[1])
    d = md.deliver(LF_MSG)
    assert d.folder == "INBOX" and d.uid == 1
    assert d.path.parent == md.path / "new"
    m = NAME_RE.match(d.path.name)
    assert m, d.path.name
    assert int(m[5]) == len(LF_MSG)
    assert int(m[6]) == len(LF_MSG) + LF_MSG.count(b"\n")
    assert d.path.read_bytes() == LF_MSG
    assert not os.listdir(md.path / "tmp")
    # the file was fsync'd in tmp/, then new/ itself
    assert any("/tmp/" in p for p in synced)
    assert str(md.path / "new") in synced
    assert synced.index(str(md.path / "new")) > [i for i, p in enumerate(synced) if "/tmp/" in p][0]


def test_hostname_escaped(monkeypatch, tmp_path):
    monkeypatch.setattr(md_names.socket, "gethostname", lambda: "a/b:c")
    assert md_names.escaped_hostname() == "a\\057b\\072c"


def test_deliver_with_flags_and_internaldate(md):
    d = md.deliver(MSG, folder="Sent", flags=["\\Seen", "\\answered"], internaldate=1_600_000_000)
    assert d.path.parent == md.path / ".Sent" / "cur"
    assert d.path.name.endswith(":2,RS")
    [msg] = md.folder("Sent").sync()
    assert msg.flags == {"\\Seen", "\\Answered"}
    assert msg.mtime == 1_600_000_000
    assert msg.size == len(MSG) and msg.vsize == len(MSG)
    assert md.folder("Sent").read(msg) == MSG


def test_stage_abort_leaves_nothing(md):
    staged = md.stage(MSG)
    assert len(os.listdir(md.path / "tmp")) == 1
    assert md.folder("INBOX").sync() == []
    staged.abort()
    assert os.listdir(md.path / "tmp") == []
    assert os.listdir(md.path / "new") == []
    assert md.folder("INBOX").sync() == []
    assert md.quota_usage() == (0, 0)


def test_stage_commit(md):
    staged = md.stage(MSG, folder="Drafts", flags=["\\Draft"])
    assert os.listdir(md.path / ".Drafts" / "cur") == []
    d = staged.commit()
    assert d.uid == 1 and d.folder == "Drafts"
    assert os.listdir(md.path / ".Drafts" / "tmp") == []
    assert md.folder("Drafts").sync()[0].flags == {"\\Draft"}
    with pytest.raises(MailError, match="already committed"):
        staged.commit()


def test_uidlist_header_and_records(md):
    for _ in range(3):
        md.deliver(MSG)
    lines = uidlist_lines(md.path)
    assert re.fullmatch(r"3 V\d+ N\d+ G[0-9a-f]{32}", lines[0])
    bases = sorted(p.split(":")[0] for p in os.listdir(md.path / "new"))
    records = [line.split(" :", 1) for line in lines[1:]]
    assert [int(uid) for uid, _ in records] == [1, 2, 3]
    assert sorted(base for _, base in records) == bases


def test_uids_ascending_never_reused(md):
    inbox = md.folder("INBOX")
    uids = [md.deliver(MSG).uid for _ in range(5)]
    assert uids == [1, 2, 3, 4, 5]
    msgs = inbox.sync()
    inbox.expunge([msgs[3], msgs[4]])
    assert [m.uid for m in inbox.sync()] == [1, 2, 3]
    assert inbox.uidnext() == 6
    assert md.deliver(MSG).uid == 6
    md_uidlist._UIDLIST_CACHE.clear()  # a fresh process reads the same
    assert Maildir(md.path).folder("INBOX").uidnext() == 7


def test_sync_gives_uids_to_foreign_files(md):
    inbox = md.folder("INBOX")
    (md.path / "new" / "1700000001.foreign").write_bytes(LF_MSG)
    (md.path / "cur" / "1700000000.other:2,S").write_bytes(MSG)
    msgs = inbox.sync()
    assert [(m.uid, m.base) for m in msgs] == [(1, "1700000000.other"), (2, "1700000001.foreign")]
    assert msgs[1].vsize == len(LF_MSG) + LF_MSG.count(b"\n")
    assert msgs[0].flags == {"\\Seen"}
    # sizes of names without ,S=/,W= go into the record, as Dovecot does
    assert f"2 S{len(LF_MSG)} W{msgs[1].vsize} :1700000001.foreign" in uidlist_lines(md.path)


def _deliver_many(path: str, count: int, queue) -> None:
    m = Maildir(Path(path))
    queue.put([m.deliver(f"Subject: {i}\r\n\r\n{os.getpid()}\r\n".encode(), folder="Archive").uid
               for i in range(count)])


def test_two_processes_deliver_concurrently(md):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_deliver_many, args=(str(md.path), 200, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    uids = results[0] + results[1]
    assert len(set(uids)) == 400
    assert sorted(uids) == list(range(1, 401))
    archive = md.folder("Archive")
    assert len(os.listdir(archive.path / "new")) == 400
    msgs = archive.sync()
    assert sorted(m.uid for m in msgs) == list(range(1, 401))
    assert md.quota_usage()[1] == 400


# -- flags --------------------------------------------------------------------

def test_set_flags_and_keywords(md):
    inbox = md.folder("INBOX")
    md.deliver(MSG)
    [msg] = inbox.sync()
    assert msg.subdir == "new" and msg.flags == frozenset()
    msg = inbox.set_flags(msg, ["\\Seen", "\\Flagged", "$Forwarded", "Work", "$Junk"])
    assert msg.subdir == "cur"
    # $Forwarded is "P" for mutt and a keyword for Dovecot, which ignores "P"
    assert msg.filename == f"{msg.base}:2,FPSabc"
    assert (md.path / "dovecot-keywords").read_text() == "0 $Forwarded\n1 $Junk\n2 Work\n"
    assert msg.flags == {"\\Seen", "\\Flagged", "$Forwarded", "Work", "$Junk"}
    [again] = inbox.sync()
    assert again.flags == msg.flags and again.uid == msg.uid
    msg = inbox.set_flags(again, ["$junk", "\\Deleted"])  # keywords match case-insensitively
    assert msg.filename.endswith(":2,Tb")
    assert inbox.sync()[0].flags == {"$Junk", "\\Deleted"}
    assert inbox.set_flags(msg, []).filename.endswith(":2,")


def test_set_flags_follows_concurrent_rename(md):
    inbox = md.folder("INBOX")
    md.deliver(MSG, flags=["\\Seen"])
    [msg] = inbox.sync()
    os.rename(msg.path, msg.path.with_name(msg.base + ":2,FS"))  # someone else flagged it
    updated = inbox.set_flags(msg, ["\\Answered"])
    assert updated.flags == {"\\Answered"}
    assert inbox.read(updated) == MSG
    assert [m.filename for m in inbox.sync()] == [msg.base + ":2,R"]


def test_read_after_rename(md):
    inbox = md.folder("INBOX")
    md.deliver(MSG)
    [msg] = inbox.sync()
    os.rename(msg.path, md.path / "cur" / (msg.base + ":2,S"))
    assert inbox.read(msg) == MSG
    assert msg.mtime > 0


def test_keyword_limit(md):
    inbox = md.folder("INBOX")
    md.deliver(MSG)
    [msg] = inbox.sync()
    msg = inbox.set_flags(msg, [f"k{i}" for i in range(26)])
    assert len(msg.filename.split(":2,")[1]) == 26
    with pytest.raises(InvalidInput, match="26 keywords"):
        inbox.set_flags(msg, ["one-too-many"])
    with pytest.raises(InvalidInput):
        inbox.set_flags(msg, ["\\Recent"])
    with pytest.raises(InvalidInput):
        inbox.set_flags(msg, ["bad keyword"])


# -- copy, move, expunge ------------------------------------------------------

def test_copy_move_expunge(md):
    inbox, archive = md.folder("INBOX"), md.folder("Archive")
    md.deliver(MSG, internaldate=1_500_000_000)
    [msg] = inbox.sync()
    msg = inbox.set_flags(msg, ["\\Seen", "Important"])
    copied = inbox.copy_to(msg, archive)
    assert copied.folder == "Archive" and copied.uid == 1
    assert copied.path.parent == archive.path / "cur"
    assert os.stat(copied.path).st_ino == os.stat(msg.path).st_ino  # hard link
    [acopy] = archive.sync()
    assert acopy.flags == {"\\Seen", "Important"}
    assert acopy.mtime == 1_500_000_000
    assert (archive.path / "dovecot-keywords").read_text() == "0 Important\n"
    moved = inbox.move_to(msg, md.folder("Trash"))
    assert moved.uid == 1
    assert inbox.sync() == []
    assert md.folder("Trash").read(md.folder("Trash").sync()[0]) == MSG
    assert md.quota_usage() == (2 * len(MSG), 2)
    archive.expunge([acopy, acopy])  # twice: the missing one is ignored
    assert archive.sync() == []
    assert md.quota_usage() == (len(MSG), 1)
    assert archive.status()["uidnext"] == 2


def test_status(md):
    inbox = md.folder("INBOX")
    md.deliver(MSG)
    md.deliver(MSG, flags=["\\Seen"])
    md.deliver(LF_MSG, flags=["\\Flagged", "\\Deleted"])
    st = inbox.status()
    # size: on disk; vsize: as served, every line ending in CRLF (STATUS SIZE, RFC 8438);
    # deleted: IMAP4rev2's STATUS DELETED
    assert st == {"messages": 3, "unseen": 2, "deleted": 1, "recent": 1, "size": 2 * len(MSG) + len(LF_MSG),
                  "vsize": 2 * len(MSG) + len(LF_MSG) + LF_MSG.count(b"\n"),
                  "uidnext": 4, "uidvalidity": inbox.uidvalidity()}


# -- folders ------------------------------------------------------------------

def test_folder_create_rename_delete(md):
    f = md.create_folder("Projects/2024/Q1")
    assert f.path == md.path / ".Projects.2024.Q1"
    assert (md.path / ".Projects.2024" / "maildirfolder").exists()
    with pytest.raises(AlreadyExists):
        md.create_folder("Projects/2024")
    md.subscribe("Projects/2024/Q1")
    md.deliver(MSG, folder="Projects/2024/Q1")
    uidvalidity = f.uidvalidity()
    md.rename_folder("Projects", "Work/Old")
    names = [i.name for i in md.list_folders()]
    assert "Work/Old/2024/Q1" in names and not any(n.startswith("Projects") for n in names)
    moved = md.folder("Work/Old/2024/Q1")
    assert moved.uidvalidity() == uidvalidity and len(moved.sync()) == 1
    assert "Work/Old/2024/Q1" in md.subscriptions()
    info = {i.name: i for i in md.list_folders()}
    assert info["Work/Old"].has_children and not info["Work/Old/2024/Q1"].has_children
    with pytest.raises(InvalidInput, match="subfolders"):
        md.delete_folder("Work/Old")
    md.deliver(MSG)
    md.rename_folder("INBOX", "X")              # RFC 3501 6.3.5: the messages move, INBOX stays
    assert len(md.folder("X").sync()) == 1 and md.folder("INBOX").sync() == []
    md.delete_folder("X")
    with pytest.raises(InvalidInput):
        md.delete_folder("inbox")
    with pytest.raises(AlreadyExists):
        md.rename_folder("Sent", "Drafts")
    with pytest.raises(NotFound):
        md.rename_folder("Nope", "Other")
    md.delete_folder("Work/Old/2024/Q1")
    assert "Work/Old/2024/Q1" not in md.subscriptions()
    with pytest.raises(NotFound):
        md.folder("Work/Old/2024/Q1")
    assert md.quota_usage() == (0, 0)
    assert os.listdir(md.path / "tmp") == []
    # re-creating a deleted name gives a new UIDVALIDITY
    assert md.create_folder("Work/Old/2024/Q1").uidvalidity() > uidvalidity


def test_utf7_folder_names(md):
    md.create_folder("Entwürfe")
    assert (md.path / ".Entw&APw-rfe").is_dir()
    md.subscribe("Entwürfe")
    assert "Entw&APw-rfe\n" in (md.path / "subscriptions").read_text()
    assert "Entwürfe" in md.subscriptions()
    assert md.folder("Entwürfe").name == "Entwürfe"
    # names from disk that are not valid mUTF-7 are skipped, not fatal
    (md.path / ".Bad&Jjo").mkdir()
    (md.path / ".&AGE-").mkdir()
    names = [i.name for i in md.list_folders()]
    assert "Entwürfe" in names and len(names) == 1 + len(DEFAULT_FOLDERS) + 1


@pytest.mark.parametrize("bad", ["../x", "a/../b", ".hidden", "a.b", "a\0b", "", "a//b", "/a", "a/",
                                 "tab\there", "x" * 300, "é" * 100, ".", ".."])
def test_bad_folder_names(md, bad):
    with pytest.raises(InvalidInput):
        md.create_folder(bad)
    with pytest.raises(InvalidInput):
        md.folder(bad)
    assert sorted(p.name for p in md.path.parent.iterdir()) == ["alice"]


def test_dot_message(md):
    with pytest.raises(InvalidInput, match="dots cannot be stored"):
        md.create_folder("v1.2")


def test_inbox_names(md):
    assert md.folder("inbox").name == "INBOX"
    with pytest.raises(AlreadyExists):
        md.create_folder("Inbox")
    assert md.create_folder("inbox/Sub").name == "INBOX/Sub"
    assert (md.path / ".INBOX.Sub").is_dir()
    assert {i.name: i.has_children for i in md.list_folders()}["INBOX"] is True


# -- quota --------------------------------------------------------------------

def test_quota(md):
    md.set_quota(1000)
    assert md.quota_limit() == 1000
    assert (md.path / "maildirsize").read_text().splitlines()[0] == "1000S,0C"
    md.deliver(MSG)
    md.deliver(MSG, folder="Trash")  # Trash counts
    assert md.quota_usage() == (2 * len(MSG), 2)
    md.check_quota(1000 - 2 * len(MSG))
    with pytest.raises(QuotaExceeded, match=rf"over quota: used {2 * len(MSG)} of 1000 bytes"):
        md.check_quota(1000)
    with pytest.raises(QuotaExceeded):
        md.deliver(b"x" * 1000)
    md.deliver(b"x" * 1000, check_quota=False)
    assert md.quota_usage() == (2 * len(MSG) + 1000, 3)


def test_quota_recalc(md):
    md.set_quota(5000)
    for _ in range(3):
        md.deliver(MSG)
    (md.path / "maildirsize").unlink()
    assert md.quota_usage() == (3 * len(MSG), 3)
    (md.path / "maildirsize").write_text("garbage\n")
    assert md.quota_usage() == (3 * len(MSG), 3)
    # a file that grew to 5120 bytes is rewritten from the files
    with open(md.path / "maildirsize", "a") as f:
        f.write("0 0\n" * 1300)
    assert md.quota_usage() == (3 * len(MSG), 3)
    assert (md.path / "maildirsize").stat().st_size < 100


def test_quota_file_compacted_on_growth(md):
    for _ in range(700):
        md.quota.add(1, 1)
    assert (md.path / "maildirsize").stat().st_size < 5120


# -- Dovecot-written state ------------------------------------------------------

def test_reads_dovecot_uidlist(md):
    inbox = md.folder("INBOX")
    names = {
        "1276528487.M364837P9451.kurkku,S=1355,W=1394": ":2,S",
        "1276533073.M242911P3632.kurkku": ":2,Fa",
        "1276533100.M1P1.kurkku,S=5,W=6": "",
    }
    for base, info in names.items():
        sub = "cur" if info else "new"
        (inbox.path / sub / (base + info)).write_bytes(b"x" * 5)
    (inbox.path / "dovecot-uidlist").write_text(
        "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1 Zunknown\n"
        "25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n"
        "25017 W2481 G00aa :1276533073.M242911P3632.kurkku:2,F\n"
        "25020 P1234 O3 :1276533100.M1P1.kurkku,S=5,W=6\n"
        "25021 :1276500000.M1P1.gone\n")
    (inbox.path / "dovecot-keywords").write_text("0 $Junk\n1 $NonJunk\n")
    md_uidlist._UIDLIST_CACHE.clear()
    inbox = md.folder("INBOX")
    msgs = inbox.sync()
    assert [m.uid for m in msgs] == [25006, 25017, 25020]
    assert msgs[0].size == 1355 and msgs[0].vsize == 1394 and msgs[0].flags == {"\\Seen"}
    assert msgs[1].vsize == 2481 and msgs[1].size == 5 and msgs[1].flags == {"\\Flagged", "$Junk"}
    assert msgs[2].subdir == "new"
    assert inbox.uidvalidity() == 1275660208
    assert inbox.uidnext() == 25022
    d = md.deliver(MSG)
    assert d.uid == 25022
    # a rewrite keeps unknown header and record keys; the missing file's record is gone
    inbox.expunge([msgs[2]])
    lines = uidlist_lines(inbox.path)
    assert lines[0].split()[0] == "3" and "Zunknown" in lines[0] and "N25023" in lines[0]
    assert "25017 W2481 G00aa :1276533073.M242911P3632.kurkku" in lines
    assert not any("gone" in line for line in lines)


def test_resync(md):
    md.deliver(MSG)
    md.deliver(MSG)
    inbox = md.folder("INBOX")
    first = inbox.sync()
    (md.path / "maildirsize").write_text("0S,0C\n-5 -5\n")
    (inbox.path / "new" / "1700000000.M1P1.x").write_bytes(MSG)
    first[0].path.unlink()
    md.resync()
    lines = uidlist_lines(inbox.path)
    assert [line.split()[0] for line in lines[1:]] == ["2", "3"]
    assert "N4" in lines[0]
    assert md.quota_usage() == (2 * len(MSG), 2)


def test_stale_dotlock_is_broken(md):
    lock = md.path / "dovecot-uidlist.lock"
    lock.write_text("999999999:" + md_names.socket.gethostname())  # a dead holder
    assert md.deliver(MSG).uid == 1
    lock.write_text("")
    old = time.time() - 300
    os.utime(lock, (old, old))  # older than 2 minutes
    assert md.deliver(MSG).uid == 2
    assert not lock.exists()


def test_sync_100k_messages(tmp_path):
    m = Maildir(tmp_path / "big")
    m.create(folders=[])
    inbox = m.folder("INBOX")
    cur = str(inbox.path / "cur")
    for i in range(100_000):
        os.close(os.open(f"{cur}/{1700000000 + i // 1000}.M{i}P1Q{i}.host,S=100,W=102:2,S",
                         os.O_CREAT | os.O_WRONLY, 0o600))
    t0 = time.perf_counter()
    msgs = inbox.sync()
    t1 = time.perf_counter()
    assert len(msgs) == 100_000 and msgs[-1].uid == 100_000
    again = inbox.sync()
    t2 = time.perf_counter()
    md_uidlist._UIDLIST_CACHE.clear()
    cold = m.folder("INBOX").sync()
    t3 = time.perf_counter()
    assert len(again) == len(cold) == 100_000
    print(f"\n100k sync: first (assigning UIDs) {t1 - t0:.2f}s, repeat {t2 - t1:.2f}s, "
          f"fresh process {t3 - t2:.2f}s")
    assert t2 - t1 < 10 and t3 - t2 < 10


def test_sync_patched_with_outside_changes_equals_a_fresh_sync(md, monkeypatch):
    """Another process renames (flags), moves new/ -> cur/, drops in and deletes files:
    the sync that patches its last result sees exactly what a fresh process sees."""
    import random
    rng = random.Random(7)
    inbox = md.folder("INBOX")
    for i in range(60):
        md.deliver(f"Subject: m{i}\n\nbody {i}\n".encode(), flags=["\\Seen"] if i % 2 else [])
    patched = record_patching(monkeypatch)

    def view(messages):
        return [(m.uid, m.subdir, m.filename, tuple(sorted(m.flags)), m.vsize) for m in messages]

    inbox.sync()
    for step in range(40):
        for _ in range(rng.randint(1, 4)):
            action = rng.choice(["flag", "move", "foreign", "delete", "deliver"])
            cur = sorted(os.listdir(md.path / "cur"))
            new = sorted(os.listdir(md.path / "new"))
            if action == "flag" and cur:
                name = rng.choice(cur)
                stem, _, flags = name.partition(":2,")
                os.rename(md.path / "cur" / name, md.path / "cur" / f"{stem}:2,{'FS' if 'F' not in flags else 'S'}")
            elif action == "move" and new:
                name = rng.choice(new)
                os.rename(md.path / "new" / name, md.path / "cur" / f"{name}:2,S")
            elif action == "foreign":
                (md.path / "new" / f"{1700000000 + step}.M{rng.randint(0, 10**6)}P9.other").write_bytes(b"Subject: x\n\nx\n")
            elif action == "delete" and cur:
                os.unlink(md.path / "cur" / rng.choice(cur))
            elif action == "deliver":
                md.deliver(b"Subject: d\n\nd\n")
        ours = view(inbox.sync(sizes=step % 3 != 0))     # IMAP SELECT syncs without sizes
        md_uidlist._UIDLIST_CACHE.clear()          # a fresh process
        fresh = view(Maildir(md.path).folder("INBOX").sync())
        assert ours == fresh, step
        inbox = md.folder("INBOX")
        inbox.sync()
    assert sum(patched) >= 20                   # the patching path was really taken


def test_sizes_read_by_a_sync_are_saved_for_the_next_process(md):
    """Files named without sizes get UIDs from a sync that reads no file (IMAP SELECT);
    a later sync that needs sizes (POP3) reads each file once and saves S/W into the
    uidlist, so the next process neither reads the files nor gets them wrong."""
    inbox = md.folder("INBOX")
    count = md_folder.SAVE_SIZES_BATCH + 5
    expected = {}
    for i in range(count):
        base = f"{1700000000 + i}.M{i}P7.otherhost"
        data = f"Subject: {i}\n\n".encode() + b"x\n" * (i % 50)
        (md.path / "new" / base).write_bytes(data)
        expected[base] = (len(data), len(data) + data.count(b"\n"))
    inbox.sync(sizes=False)
    assert all(" S" not in line for line in uidlist_lines(md.path)[1:])
    md_uidlist._UIDLIST_CACHE.clear()                      # a fresh process, wanting sizes
    md.folder("INBOX").sync(sizes=True)
    saved = {}
    for line in uidlist_lines(md.path)[1:]:
        keys, _, base = line.partition(" :")
        fields = dict((k[0], int(k[1:])) for k in keys.split()[1:])
        saved[base] = (fields.get("S"), fields.get("W"))
    assert saved == expected
    md_uidlist._UIDLIST_CACHE.clear()
    sizes = {m.base: (m._size, m._vsize) for m in md.folder("INBOX").sync(sizes=True)}
    assert sizes == expected                           # known from the records alone


def test_records_appended_by_us_equal_the_file_and_continue_it(md):
    """UIDs given by a sync are taken into the parsed uidlist as written, not read back:
    they must equal what a fresh parse of the file gives, and the next refresh must see
    the file as continued (not rewritten, which would cost a full parse)."""
    inbox = md.folder("INBOX")
    md.deliver(b"Subject: first\n\nx\n")
    inbox.sync()
    for i in range(50):
        (md.path / "new" / f"{1700000000 + i % 7}.M{(i * 7919) % 1000}P3.otherhost{i}").write_bytes(b"Subject: y\n\ny\n")
    uidlist = md_uidlist.uidlist_for(md.path)
    generation = uidlist.generation
    msgs = inbox.sync(sizes=False)
    assert len(msgs) == 51 and [m.uid for m in msgs] == list(range(1, 52))
    uidlist.refresh()
    assert uidlist.generation == generation
    ours = dict(uidlist.records)
    md_uidlist._UIDLIST_CACHE.clear()
    fresh = md_uidlist.uidlist_for(md.path)
    fresh.refresh()
    assert fresh.records == ours and fresh.next_uid == uidlist.next_uid == 52
    # delivery order: seconds, then microseconds, then the name
    order = [m.base for m in msgs[1:]]
    assert order == sorted(order, key=lambda b: (int(b.split(".")[0]), int(b.split(".M")[1].split("P")[0]), b))


def test_uidlist_rewritten_in_place_is_read_whole(md):
    """Another program rewrites dovecot-uidlist in place (same inode, new content): the
    next sync reads the new file from its start. Reading on from where the check for an
    append stopped lost the header, and the folder got a new UIDVALIDITY and new UIDs."""
    inbox = md.folder("INBOX")
    for i in range(3):
        md.deliver(f"Subject: {i}\n\n{i}\n".encode())
    before = {m.base: m.uid for m in inbox.sync()}
    uidvalidity = inbox.uidvalidity()
    path = md.path / "dovecot-uidlist"
    lines = path.read_text().splitlines()
    # The same records with a P field added (as Dovecot does for a kept POP3 UIDL), and
    # the header's fields in another order: longer than before, same inode.
    header = lines[0].split()
    rewritten = [" ".join([header[0]] + header[1:][::-1])]
    for line in lines[1:]:
        uid, _, rest = line.partition(" ")
        rewritten.append(f"{uid} Pkept{uid} {rest}")
    with open(path, "r+") as f:
        f.write("\n".join(rewritten) + "\n")
        f.truncate()
    after = {m.base: m.uid for m in inbox.sync()}
    assert after == before and inbox.uidvalidity() == uidvalidity
    assert inbox.record_fields("P") == {base: f"kept{uid}" for base, uid in before.items()}


def test_saving_measured_sizes_keeps_the_last_sync_patchable(md, monkeypatch):
    """Sizes measured on first use are saved by rewriting the uidlist (only S/W keys
    added): the sync that saved them is still the folder's, so the next sync patches it
    instead of listing and rebuilding every message."""
    monkeypatch.setattr(md_folder, "SAVE_SIZES_BATCH", 5)
    for i in range(40):
        (md.path / "new" / f"{1700000000 + i}.M{i}P5.otherhost").write_bytes(b"Subject: s\n\n" + b"x" * i)
    inbox = md.folder("INBOX")
    msgs = inbox.sync(sizes=False)
    before = uidlist_lines(md.path)
    assert [m.vsize for m in msgs] == [len(b"Subject: s\n\n") + 2 + i for i in range(40)]  # measured
    patched = record_patching(monkeypatch)
    again = inbox.sync(sizes=False)                    # saves the sizes: a rewrite
    assert uidlist_lines(md.path) != before and all(" S" in line for line in uidlist_lines(md.path)[1:])
    third = inbox.sync(sizes=False)
    assert patched[-1] is True
    assert [(m.uid, m.filename, m.vsize) for m in third] == [(m.uid, m.filename, m.vsize) for m in again]


def _reference_delivery_key(base: str) -> tuple:
    """Delivery order as Dovecot numbers new files: ASCII seconds before the first ".",
    then microseconds from "M<1-6 digits>" up to "P" (or the end), then the name."""
    m = re.fullmatch(r"([0-9]+)(?:\.(?:M([0-9]{1,6})(?:P.*)?$)?.*)?", base, re.DOTALL)
    if m is None:
        return (0, 0, base)
    return (int(m.group(1)), int(m.group(2) or 0), base)


@pytest.mark.parametrize("seed", range(6))
def test_new_files_are_numbered_in_delivery_order(seed):
    import random
    rng = random.Random(seed)
    odd = ["", "M", "Mx", "M1234567P", "V1", "M12", "M12Q3P"]

    def name() -> str:
        r = rng.random()
        if r < 0.5:   # Postfix virtual(8)
            return f"{rng.randint(10**9, 10**9 + 40)}.V1I{rng.randint(0, 10**6):x}M{rng.randint(0, 999999):06d}.host"
        if r < 0.7:   # Dovecot and ours: microseconds, not zero-padded
            return f"{rng.randint(10**9, 10**9 + 40)}.M{rng.randint(0, 999999)}P{rng.randint(1, 99)}.host"
        if r < 0.85:
            return f"{rng.randint(0, 10**11)}.{rng.choice(odd)}"
        return "".join(rng.choice("0123456789.MPx\n\u00b2\u0661") for _ in range(rng.randint(1, 12)))

    postfix = {f"{rng.randint(10**9, 10**9 + 40)}.V1I{i:x}M{rng.randint(0, 999999):06d}.host"
               for i in range(1500)}
    dovecot = {f"{rng.randint(10**9, 10**9 + 40)}.M{rng.randint(0, 999999)}P{i}.host" for i in range(1500)}
    # Large sets of Postfix names alone take the fast path; any other name must leave it.
    for names in ({name() for _ in range(5)}, postfix, dovecot, postfix | {name()},
                  {name() for _ in range(3000)}):
        assert md_names.delivery_order(list(names)) == sorted(names, key=_reference_delivery_key)


def test_a_file_named_with_other_digits_is_numbered_like_any_other(tmp_path):
    box = Maildir(tmp_path / "box")
    box.create()
    box.deliver(b"Subject: ours\n\nbody\n")
    # "\u00b2" passes str.isdigit() but not int(): the sync once failed on such a name.
    for name in ("\u00b21.foreign", "\u0661\u0662.foreign", "17.M5P1.x"):
        (box.path / "new" / name).write_bytes(b"Subject: dropped by another tool\n\nbody\n")
    msgs = box.folder("INBOX").sync()
    assert len(msgs) == 4
    assert len({m.uid for m in msgs}) == 4


def test_a_first_sync_makes_the_messages_a_later_process_makes(tmp_path):
    """The first sync numbers files and makes their Messages without reading records
    back; a later process makes them from the records: both must agree, for plain
    files from another tool and for every kind they are mixed with."""
    box = Maildir(tmp_path / "box")
    box.create()
    inbox = box.folder("INBOX")
    for i in range(40):
        (inbox.path / "new" / f"{1700000000 + i}.V1I{i:x}M{i:06d}.mta").write_bytes(b"Subject: x\n\nbody\n")
    (inbox.path / "new" / "1700000100.V1I1M1.mta:2,S").write_bytes(b"Subject: seen in new\n\nb\n")
    (inbox.path / "new" / "1700000101.M5P1.h,S=20,W=21").write_bytes(b"Subject: sized name\n\nb\n")
    (inbox.path / "cur" / "1700000102.V1I2M2.mta:2,FS").write_bytes(b"Subject: in cur\n\nb\n")
    first = [(m.uid, m.base, m.subdir, m.filename, m.flags, m._size, m._vsize) for m in inbox.sync(sizes=False)]
    md_uidlist._UIDLIST_CACHE.clear()          # another process
    again = [(m.uid, m.base, m.subdir, m.filename, m.flags, m._size, m._vsize)
             for m in box.folder("INBOX").sync(sizes=False)]
    assert first == again
    assert len(first) == 43 and [u for u, *_ in first] == list(range(1, 44))
    flags = {m[3]: m[4] for m in first}
    assert flags["1700000100.V1I1M1.mta:2,S"] == {"\\Seen"}
    assert flags["1700000102.V1I2M2.mta:2,FS"] == {"\\Seen", "\\Flagged"}
    assert {m[3]: m[5:] for m in first}["1700000101.M5P1.h,S=20,W=21"] == (20, 21)


def test_copy_finds_a_message_renamed_between_locating_and_linking(md, monkeypatch):
    """Another process's flag change may rename the file after COPY found it and before it
    links it: the copy finds it again (before: FileNotFoundError, an IMAP SERVERBUG)."""
    inbox, sent = md.folder("INBOX"), md.folder("Sent")
    md.deliver(MSG)
    [msg] = inbox.sync()
    real_link, raced = os.link, []

    def link_after_a_rename(src, dst, *a, **kw):
        if not raced:                   # once: as a STORE in another process would
            raced.append(inbox.change_flags(msg, add={"\\Flagged"}))
        return real_link(src, dst, *a, **kw)
    monkeypatch.setattr(md_folder.os, "link", link_after_a_rename)
    copied = inbox.copy_unchecked(msg, sent)
    assert raced and (sent.path / "cur" / copied.path.name).exists()
    assert [m.uid for m in sent.sync()] == [copied.uid]
