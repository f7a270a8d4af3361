"""SELECT of a folder: the listing shared by a process's sessions never hides a change,
and RFC822.SIZE of files named without sizes is read when asked for, not at SELECT."""
from __future__ import annotations

import re
import time

from engine.maildir import UIDLIST
from helpers_mail import box, imap, mailserver, user  # noqa: F401 - pytest fixtures, used as test arguments

LF_MSG = b"From: a@example.org\nSubject: no sizes in my name\n\nline one\nline two\n"


def _select(srv, address: str, readonly: bool = False) -> dict[str, int]:
    """A fresh session's SELECT (or EXAMINE): its EXISTS, RECENT and UNSEEN."""
    c = imap(srv, address)
    typ, _ = c.select("INBOX", readonly=readonly)
    assert typ == "OK"
    out = {}
    for key in ("EXISTS", "RECENT", "UNSEEN"):
        value = c.untagged_responses.get(key, [b"0"])
        out[key] = int(value[-1])
    c.logout()
    return out


def _settle():
    time.sleep(0.1)  # past the coarse directory clock: the next scan is settled and shared


def test_shared_listing_never_hides_a_change(mailserver, user):
    md = box(mailserver, user)
    for i in range(3):
        md.deliver(f"Subject: m{i}\n\nbody\n".encode(), flags=["\\Seen"] if i == 0 else [])
    _settle()
    assert _select(mailserver, user) == {"EXISTS": 3, "RECENT": 2, "UNSEEN": 2}
    # The same answer again, from the listing the first SELECT left (nothing to claim now).
    assert _select(mailserver, user) == {"EXISTS": 3, "RECENT": 0, "UNSEEN": 2}
    md.deliver(b"Subject: m3\n\nbody\n")
    assert _select(mailserver, user)["EXISTS"] == 4
    c = imap(mailserver, user)
    c.select("INBOX")
    c.store("2", "+FLAGS", "\\Seen")
    c.logout()
    assert _select(mailserver, user)["UNSEEN"] == 3
    c = imap(mailserver, user)
    c.select("INBOX")
    c.store("1", "+FLAGS", "\\Deleted")
    c.expunge()
    c.logout()
    assert _select(mailserver, user)["EXISTS"] == 3


def test_examine_leaves_new_messages_for_a_later_select(mailserver, user):
    md = box(mailserver, user)
    for i in range(2):
        md.deliver(f"Subject: m{i}\n\nbody\n".encode())
    _settle()
    assert _select(mailserver, user, readonly=True)["RECENT"] == 2
    # EXAMINE moved nothing to cur/: the next SELECT claims them, and only that one.
    assert _select(mailserver, user)["RECENT"] == 2
    assert not any((md.path / "new").iterdir())
    assert _select(mailserver, user)["RECENT"] == 0


def test_size_of_a_file_named_without_sizes_is_read_when_asked(mailserver, user):
    md = box(mailserver, user)
    md.create()
    (md.path / "new" / "1700000001.foreign").write_bytes(LF_MSG)
    (md.path / "cur" / "1700000002.other:2,S").write_bytes(LF_MSG + b"more\n")
    c = imap(mailserver, user)
    c.select("INBOX")
    # SELECT gave UIDs without reading the files: no S/W keys in their records.
    records = (md.path / UIDLIST).read_text().splitlines()[1:]
    assert len(records) == 2 and all(re.fullmatch(r"\d+ :\S+", r) for r in records), records
    typ, data = c.fetch("1:2", "(RFC822.SIZE)")
    sizes = [int(re.search(rb"RFC822.SIZE (\d+)", d).group(1)) for d in data]
    assert sizes == [len(LF_MSG) + LF_MSG.count(b"\n"), len(LF_MSG) + 5 + LF_MSG.count(b"\n") + 1]
    # The size is what the client gets for the whole message.
    typ, data = c.fetch("2", "(RFC822)")
    assert len(data[0][1]) == sizes[1]
    c.logout()


def test_a_size_measured_once_is_not_measured_again_after_a_rename(tmp_path):
    import os
    from engine.maildir import Maildir
    from engine.root import Root
    md = Maildir.for_account(Root(tmp_path), "example.test", "alice")
    md.create()
    (md.path / "new" / "1700000001.foreign").write_bytes(LF_MSG)
    inbox = md.folder("INBOX")
    [msg] = inbox.sync(sizes=False)
    assert msg._size is None  # not read at the sync
    assert (msg.size, msg.vsize) == (len(LF_MSG), len(LF_MSG) + LF_MSG.count(b"\n"))
    # Another program moves it to cur/ with flags: a new Message, the same known sizes.
    os.rename(msg.path, md.path / "cur" / "1700000001.foreign:2,S")
    [again] = inbox.sync(sizes=False)
    assert again.subdir == "cur" and (again._size, again._vsize) == (msg.size, msg.vsize)


def test_measured_sizes_are_written_into_the_uidlist(tmp_path, monkeypatch):
    from engine import maildir as md_mod
    from engine.maildir import Maildir
    from engine.maildir import folder as md_folder
    from engine.maildir import uidlist as md_uidlist
    from engine.root import Root
    monkeypatch.setattr(md_folder, "SAVE_SIZES_BATCH", 2)
    md = Maildir.for_account(Root(tmp_path), "example.test", "alice")
    md.create()
    for i in range(3):
        (md.path / "new" / f"170000000{i}.foreign").write_bytes(LF_MSG * (i + 1))
    inbox = md.folder("INBOX")
    msgs = inbox.sync(sizes=False)
    assert [m.vsize for m in msgs[:2]] == [(len(LF_MSG) + LF_MSG.count(b"\n")) * n for n in (1, 2)]
    inbox.sync(sizes=False)  # two measured: written at this sync
    records = (md.path / UIDLIST).read_text().splitlines()[1:]
    assert [bool(re.fullmatch(r"\d+ S\d+ W\d+ :\S+", r)) for r in records] == [True, True, False]
    md_uidlist._UIDLIST_CACHE.clear()  # another process knows them from the file
    again = md_mod.Maildir(md.path).folder("INBOX").sync(sizes=False)
    assert [m._vsize for m in again] == [msgs[0].vsize, msgs[1].vsize, None]
    # A sync that promises sizes measures the one left, even if it was cached unmeasured.
    assert md_mod.Maildir(md.path).folder("INBOX").sync()[2]._vsize == (len(LF_MSG) + LF_MSG.count(b"\n")) * 3


def _inbox_of_three_seen(tmp_path):
    """INBOX of a new account with three \\Seen messages, settled for a shared listing."""
    from engine.maildir import Maildir
    from engine.root import Root
    md = Maildir.for_account(Root(tmp_path), "example.test", "alice")
    md.create()
    for i in range(3):
        md.deliver(f"Subject: m{i}\n\nbody\n".encode(), flags=["\\Seen"])
    _settle()
    return md.folder("INBOX")


def test_sessions_sharing_a_listing_change_only_their_own_copy(tmp_path):
    from engine.imap.selected import Selected
    inbox = _inbox_of_three_seen(tmp_path)
    first, second = Selected(inbox, False), Selected(inbox, False)
    first.load()
    second.load()
    assert second.listing is first.listing and second.msgs is first.msgs  # shared, not copied
    flagged = inbox.set_flags(first.msgs[0], {"\\Seen", "\\Flagged"})
    first.replace(flagged)
    first.own_lists()
    del first.msgs[2], first.uids[2]
    assert [m.flags for m in first.msgs] == [flagged.flags, {"\\Seen"}]
    assert [m.flags for m in second.msgs] == [{"\\Seen"}] * 3 and len(second.uids) == 3
    assert second.listing.msgs is second.msgs


def test_a_rescan_that_changed_nothing_the_session_sees_keeps_its_messages(tmp_path):
    """After another process added sizes to the uidlist (only), a session's rescan
    gives the same messages: nothing to announce, nothing rebuilt. A real change
    after that is still announced."""
    from engine.imap.selected import Selected
    inbox = _inbox_of_three_seen(tmp_path)
    session = Selected(inbox, False)
    session.load()
    msgs = session.msgs
    header, *records = (inbox.path / UIDLIST).read_text().splitlines()
    (inbox.path / "uidlist.new").write_text("\n".join([header + " ", *records]) + "\n")
    (inbox.path / "uidlist.new").rename(inbox.path / UIDLIST)
    scanned = session.scan()
    assert scanned is not None and session.apply(scanned) == [] and session.msgs is msgs
    inbox.set_flags(msgs[1], {"\\Flagged"})
    _settle()
    assert session.apply(session.scan()) == [b"* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\n"]
