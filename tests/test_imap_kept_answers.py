"""STATUS and LIST answered from what a serving process kept (folder_cache.cached_status,
Maildir.cached_listing) and the selected folder's updates checked on the event loop
(Selected.unchanged): with two serving processes, every change another process, or
Dovecot writing the same tree, makes shows at the next command of a session in the
other process."""
from __future__ import annotations

import contextlib
import imaplib
import os
import time

from engine.maildir import MTIME_SLACK, Maildir
from helpers_process import serving_pid
from helpers_server import make_root, serve_process, wait_for_processes

ADDRESS = "alice@example.com"
PASSWORD = "kept-answers-pw-1"


def settle() -> None:
    """Past the slack after the last change: what is read now may be kept."""
    time.sleep(MTIME_SLACK * 3)


@contextlib.contextmanager
def sessions_in_two_processes(tmp_path):
    """(A, B, the account's Maildir): logged-in sessions served by different processes."""
    root = make_root(tmp_path, accounts={ADDRESS: PASSWORD},
                     settings={"server.processes": 2, "auth.allow_plaintext": True})
    md = Maildir.for_account(root, "example.com", "alice")
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        opened = []
        try:
            for _ in range(40):
                c = imaplib.IMAP4("127.0.0.1", proc.ports["imap"])
                c.login(ADDRESS, PASSWORD)
                pid = serving_pid(c.socket(), proc.proc.pid)
                if opened and pid == opened[0][0]:
                    c.logout()      # same process again: keep under the per-user+IP limit (10)
                    continue
                opened.append((pid, c))
                if len(opened) == 2:
                    break
            else:
                raise AssertionError("the kernel never gave a session to the other process")
            a = opened[0][1]
            b = next(c for pid, c in opened if pid != opened[0][0])
            yield a, b, md
        finally:
            for _, c in opened:
                with contextlib.suppress(Exception):
                    c.logout()


def status(c: imaplib.IMAP4, name: str) -> dict[str, int]:
    typ, data = c.status(name, "(MESSAGES UNSEEN UIDNEXT RECENT)")
    assert typ == "OK", data
    words = data[0].decode().split("(", 1)[1].rstrip(")").split()
    return {k: int(v) for k, v in zip(words[::2], words[1::2])}


def kept_status(c: imaplib.IMAP4, name: str) -> dict[str, int]:
    """STATUS twice after the folder settled: the second answer is the kept one."""
    settle()
    first = status(c, name)
    assert status(c, name) == first
    return first


def names(c: imaplib.IMAP4, verb: str = "LIST") -> set[str]:
    typ, data = c.list() if verb == "LIST" else c.lsub()
    assert typ == "OK", data
    return {line.decode().rsplit(" ", 1)[1].strip('"') for line in data if line}


def kept_names(c: imaplib.IMAP4, verb: str = "LIST") -> set[str]:
    settle()
    first = names(c, verb)
    assert names(c, verb) == first
    return first


MESSAGE = b"From: x@example.org\r\nSubject: kept\r\n\r\nbody\r\n"


def test_status_from_the_other_process_shows_every_change_at_once(tmp_path):
    with sessions_in_two_processes(tmp_path) as (a, b, md):
        assert a.create("Work")[0] == "OK"
        for _ in range(3):
            assert a.append("Work", None, None, MESSAGE)[0] == "OK"
        before = kept_status(b, "Work")
        assert before["MESSAGES"] == 3 and before["UNSEEN"] == 3
        # APPEND in the other process: MESSAGES and UIDNEXT at B's very next STATUS
        assert a.append("Work", None, None, MESSAGE)[0] == "OK"
        after = status(b, "Work")
        assert after["MESSAGES"] == 4 and after["UIDNEXT"] == before["UIDNEXT"] + 1, (before, after)
        # a flag changed there: UNSEEN
        kept_status(b, "Work")
        assert a.select("Work")[0] == "OK"
        assert a.store("1", "+FLAGS", "(\\Seen)")[0] == "OK"
        assert status(b, "Work")["UNSEEN"] == 3
        # an expunge there
        kept_status(b, "Work")
        assert a.store("2", "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert a.expunge()[0] == "OK"
        assert status(b, "Work")["MESSAGES"] == 3
        a.close()
        # Dovecot (or an MDA) writing the tree: a file dropped into new/, one removed
        kept = kept_status(b, "Work")
        path = md.folder("Work").path
        (path / "new" / f"{int(time.time())}.M1P1.elsewhere").write_bytes(MESSAGE)
        now = status(b, "Work")
        assert now["MESSAGES"] == kept["MESSAGES"] + 1 and now["RECENT"] == kept["RECENT"] + 1, (kept, now)
        kept_status(b, "Work")
        os.unlink(next((path / "cur").iterdir()))
        assert status(b, "Work")["MESSAGES"] == now["MESSAGES"] - 1
        # the folder deleted there: NO, not the kept answer
        kept_status(b, "Work")
        assert a.delete("Work")[0] == "OK"
        typ, data = b.status("Work", "(MESSAGES)")
        assert typ == "NO" and b"NONEXISTENT" in data[0], data


def test_list_from_the_other_process_shows_every_change_at_once(tmp_path):
    with sessions_in_two_processes(tmp_path) as (a, b, md):
        before = kept_names(b)
        assert a.create("Projects/Alpha")[0] == "OK"
        assert names(b) == before | {"Projects", "Projects/Alpha"}
        kept_names(b)
        assert a.rename("Projects/Alpha", "Projects/Beta")[0] == "OK"
        assert names(b) == before | {"Projects", "Projects/Beta"}
        kept_names(b)
        assert a.delete("Projects/Beta")[0] == "OK"
        assert names(b) == before | {"Projects"}
        kept_lsub = kept_names(b, "LSUB")
        assert a.subscribe("Projects")[0] == "OK"
        assert names(b, "LSUB") == kept_lsub | {"Projects"}
        # Dovecot making a folder in the same tree: a directory of its own
        kept_names(b)
        made = md.path / ".FromDovecot"
        for sub in ("cur", "new", "tmp"):
            (made / sub).mkdir(parents=True)
        assert "FromDovecot" in names(b)


def test_the_selected_folder_tells_the_other_process_changes_after_list_and_status(tmp_path):
    """LIST and STATUS of another folder still give the selected folder's updates."""
    with sessions_in_two_processes(tmp_path) as (a, b, md):
        assert a.append("INBOX", None, None, MESSAGE)[0] == "OK"
        assert b.select("INBOX")[0] == "OK"
        settle()
        assert b.noop()[0] == "OK"                  # a settled scan: its stamp is kept
        assert a.append("INBOX", None, None, MESSAGE)[0] == "OK"
        settle()                # B's scan in LIST's trip finds a settled stamp: it must be told
        b.untagged_responses.clear()
        b.list()
        assert b.untagged_responses.pop("EXISTS", None) == [b"2"]
        settle()
        b.noop()
        assert a.select("INBOX")[0] == "OK"
        assert a.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert a.expunge()[0] == "OK"
        settle()
        b.untagged_responses.clear()
        status(b, "Trash")
        assert b.untagged_responses.pop("EXPUNGE", None) == [b"1"]
