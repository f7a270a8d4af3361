"""Folders kept fresh between a process's sessions: a settled sync of an unchanged folder
lists nothing, and a folder another process changed is listed again in the background,
so the next SELECT or POP3 login finds its listing ready. A refresh never hides a
change, never reads a message file, and leaves a bulk fill to the first session."""
from __future__ import annotations

import contextlib
import os
import poplib
import sys
import threading
import time
from contextlib import contextmanager

from engine import folder_cache
from engine.imap import selected
from engine.maildir import MTIME_SLACK, UIDLIST, Maildir, folder_stamp
from engine.pop3 import maildrop as pop3_maildrop
from helpers_mail import PASSWORD, box, imap, mailserver, message, user  # noqa: F401 - pytest fixtures, used as test arguments

_watching: list[tuple[str, str, int]] = []      # (event, path, thread id) while recording


def _audit(event: str, args: tuple) -> None:
    """A listing is recorded as "os.listdir" whether it lists a path or, as the store does
    (never through a link), a directory descriptor (os.scandir(fd))."""
    if not _watching or not args:
        return
    if event in ("os.listdir", "os.scandir") and isinstance(args[0], int):
        with contextlib.suppress(OSError):
            _watching.append(("os.listdir", os.readlink(f"/proc/self/fd/{args[0]}"), threading.get_ident()))
    elif event in ("os.listdir", "os.scandir", "open") and isinstance(args[0], (str, os.PathLike)):
        _watching.append(("open" if event == "open" else "os.listdir", os.fspath(args[0]), threading.get_ident()))


sys.addaudithook(_audit)


@contextmanager
def watching_files():
    """What is listed and opened meanwhile, by any thread: [(event, path, thread)]."""
    _watching.clear()
    _watching.append(("start", "", 0))
    seen: list[tuple[str, str, int]] = []
    try:
        yield seen
    finally:
        seen.extend(_watching[1:])
        _watching.clear()


def settle():
    time.sleep(MTIME_SLACK * 2 + 0.02)


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not refreshed in time"
        time.sleep(0.05)


def select_until_shared(srv, address) -> None:
    """SELECTs until one leaves its listing for the process's sessions (the first moves
    new mail to cur/, so its listing is not settled)."""
    for _ in range(2):
        settle()
        c = imap(srv, address)
        c.select("INBOX")
        c.logout()


def mark_all_seen_elsewhere(folder_path) -> None:
    """What another process's STORE 1:* +FLAGS (\\Seen) does on disk."""
    for sub in ("new", "cur"):
        for name in os.listdir(folder_path / sub):
            base, _, info = name.partition(":")
            letters = info[2:] if info.startswith("2,") else ""
            os.rename(folder_path / sub / name, folder_path / "cur" / f"{base}:2,{''.join(sorted(letters + 'S'))}")


def drop_raw_files(folder_path, count: int, start: int = 0) -> list[str]:
    """Files another MTA put into new/, named without sizes."""
    names = []
    for i in range(start, start + count):
        name = f"{1700000000 + i}.M{i}P1.elsewhere"
        (folder_path / "new" / name).write_bytes(b"Subject: raw\n\nbody\n")
        names.append(name)
    return names


def test_a_settled_sync_of_an_unchanged_folder_lists_nothing_and_misses_no_change(tmp_path):
    md = Maildir(tmp_path / "box")
    md.create()
    for i in range(5):
        md.deliver(message(f"m{i}"))
    folder = md.folder("INBOX")
    first = folder.sync()
    settle()
    folder.sync()                               # settled: its stamp is kept
    with watching_files() as seen:
        again = folder.sync()
    assert again == first
    assert not [s for s in seen if s[0] == "os.listdir"]
    # Every kind of change is still seen: another process's flag change, new mail,
    # an expunge, a uidlist rewritten by Dovecot.
    mark_all_seen_elsewhere(folder.path)
    assert all("\\Seen" in m.flags for m in folder.sync())
    md.deliver(message("late"))
    assert len(folder.sync()) == 6
    gone = folder.sync()[0]
    os.unlink(gone.path)
    assert gone.uid not in [m.uid for m in folder.sync()]
    settle()
    folder.sync()
    text = (folder.path / UIDLIST).read_text()
    (folder.path / "uidlist.new").write_text(text.replace(" ", "  ", 1))   # same records, new file
    (folder.path / "uidlist.new").rename(folder.path / UIDLIST)
    with watching_files() as seen:
        assert [m.uid for m in folder.sync()] == [m.uid for m in first[1:]] + [6]
    assert [s for s in seen if s[0] == "os.listdir"]


def test_a_quiet_sync_leaves_a_bulk_fill_unnumbered(tmp_path):
    md = Maildir(tmp_path / "box")
    md.create()
    folder = md.folder("INBOX")
    drop_raw_files(folder.path, 10)
    before = (folder.path / UIDLIST).read_bytes()
    assert folder.sync_quietly(max_new=5) is None                 # no last sync: the full path
    assert (folder.path / UIDLIST).read_bytes() == before
    assert len(folder.sync_quietly(max_new=10)[1]) == 10
    drop_raw_files(folder.path, 10, start=100)
    numbered = (folder.path / UIDLIST).read_bytes()
    assert folder.sync_quietly(max_new=5) is None                 # patching the last sync
    assert (folder.path / UIDLIST).read_bytes() == numbered
    assert len(folder.sync()) == 20


def test_a_folder_changed_by_another_process_is_listed_again_before_the_next_select(mailserver, user):
    md = box(mailserver, user)
    for i in range(30):
        md.deliver(message(f"m{i}"))
    path = md.folder("INBOX").path
    select_until_shared(mailserver, user)
    listing = selected._LISTINGS.peek(str(path))
    assert listing is not None and listing.first_unseen == 1
    mark_all_seen_elsewhere(path)
    wait_for(lambda: selected._LISTINGS.peek(str(path)).stamp == folder_stamp(path)[0])
    remade = selected._LISTINGS.peek(str(path))
    assert remade is not listing and remade.first_unseen is None
    assert all("\\Seen" in m.flags for m in remade.msgs)
    with watching_files() as seen:
        c = imap(mailserver, user)
        typ, _ = c.select("INBOX")
        assert typ == "OK" and "UNSEEN" not in c.untagged_responses
        typ, data = c.fetch("1:*", "(FLAGS)")
        c.logout()
    assert len(data) == 30 and all(b"\\Seen" in d for d in data)
    assert not [s for s in seen if s[0] == "os.listdir" and s[1].startswith(str(path))]


def test_a_bulk_fill_is_left_to_the_first_select(mailserver, user, monkeypatch):
    monkeypatch.setattr(folder_cache, "QUIET_NEW_UIDS", 5)
    md = box(mailserver, user)
    md.deliver(message("first"))
    path = md.folder("INBOX").path
    select_until_shared(mailserver, user)
    names = drop_raw_files(path, 20)
    uidlist = (path / UIDLIST).read_bytes()
    with watching_files() as seen:
        time.sleep(folder_cache.POLL_SECONDS * 6)            # polls enough to have acted
    assert (path / UIDLIST).read_bytes() == uidlist
    assert not [s for s in seen if s[0] == "open" and os.path.basename(s[1]) in names]
    assert selected._LISTINGS.peek(str(path)).stamp != folder_stamp(path)[0]
    c = imap(mailserver, user)
    typ, data = c.select("INBOX")
    c.logout()
    assert data == [b"21"]


def test_a_pop3_snapshot_is_made_again_only_when_no_file_must_be_read(mailserver, user):
    md = box(mailserver, user)
    for i in range(10):
        md.deliver(message(f"m{i}"))
    path = md.folder("INBOX").path
    settle()
    p = pop3_login(mailserver, user)
    sizes = p.list()[1]
    p.quit()
    mark_all_seen_elsewhere(path)
    wait_for(lambda: pop3_maildrop._SNAPSHOTS.peek(str(path)).stamp == folder_stamp(path)[0])
    with watching_files() as seen:
        p = pop3_login(mailserver, user)
        assert p.list()[1] == sizes
        p.quit()
    assert not [s for s in seen if s[0] == "os.listdir" and s[1].startswith(str(path))]
    # A file without sizes in its name: the refresh would have to read it, so it leaves
    # the snapshot to the next login (which reads it).
    names = drop_raw_files(path, 1)
    with watching_files() as seen:
        time.sleep(folder_cache.POLL_SECONDS * 6)
    assert not [s for s in seen if s[0] == "open" and os.path.basename(s[1]) in names]
    assert pop3_maildrop._SNAPSHOTS.peek(str(path)).stamp != folder_stamp(path)[0]
    p = pop3_login(mailserver, user)
    assert p.stat()[0] == 11
    p.quit()


def pop3_login(srv, address):
    p = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=20)
    p.user(address)
    p.pass_(PASSWORD)
    return p
