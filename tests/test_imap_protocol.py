"""IMAP4rev1 commands and extensions through imaplib and imapclient."""
from __future__ import annotations

import imaplib
import os
import time

import imapclient
import pytest

from helpers_mail import (PASSWORD, box, client_tls, imap, mailserver, message, user)  # noqa: F401 - pytest fixtures, used as test arguments

MULTIPART = b"""From: Dave <dave@example.org>
To: alice@example.com, "Bob B" <bob@example.com>
Cc: carol@example.org
Subject: =?utf-8?q?caf=C3=A9?= report
Date: Tue, 03 Jan 2023 11:00:00 +0100
Message-ID: <mp1@example.org>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

preamble
--b1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Hello caf=C3=A9 world
second line
--b1
Content-Type: application/octet-stream; name="x.bin"
Content-Disposition: attachment; filename="x.bin"
Content-Transfer-Encoding: base64

YWJjZGU=
--b1
Content-Type: message/rfc822

Subject: inner
From: inner@example.org

inner body
--b1--
"""


def test_greeting_capability_and_login(mailserver, user):
    c = imap(mailserver)
    caps = c.capabilities
    for cap in ("IMAP4REV1", "STARTTLS", "IDLE", "UIDPLUS", "MOVE", "LITERAL+", "SASL-IR",
                "NAMESPACE", "ID", "ENABLE", "UNSELECT", "CHILDREN", "SPECIAL-USE", "QUOTA"):
        assert cap in caps
    assert any(c_.startswith("APPENDLIMIT=") for c_ in caps)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        c.login(user, "wrong")
    typ, data = c.login(user, PASSWORD)
    assert typ == "OK"
    assert c.noop()[0] == "OK"
    typ, data = c.xatom("ID", '("name" "test")')
    assert typ == "OK"
    assert c.logout()[0] == "BYE"


def test_authenticate_plain_and_sasl_ir(mailserver, user):
    c = imapclient.IMAPClient("127.0.0.1", port=mailserver.port("imap"), ssl=False, timeout=20)
    c.plain_login(user, PASSWORD)  # imapclient sends the initial response (SASL-IR)
    assert c.namespace().personal[0][0] == ""
    c.logout()
    c = imap(mailserver)
    c.authenticate("PLAIN", lambda _: f"\0{user}\0{PASSWORD}".encode())
    assert c.state == "AUTH"
    c.logout()


def test_starttls_and_implicit_tls(mailserver, user):
    c = imap(mailserver)
    c.starttls(ssl_context=client_tls())
    assert "STARTTLS" not in c.capabilities
    c.login(user, PASSWORD)
    c.logout()
    c = imap(mailserver, user, port_name="imaps")
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def test_select_examine_fetch_items(mailserver, user):
    md = box(mailserver, user)
    md.deliver(message("first"), internaldate=1_600_000_000)
    md.deliver(MULTIPART.replace(b"\r\n", b"\n"))
    c = imapclient.IMAPClient("127.0.0.1", port=mailserver.port("imap"), ssl=False, timeout=20)
    c.login(user, PASSWORD)
    info = c.select_folder("INBOX")
    assert info[b"EXISTS"] == 2 and info[b"RECENT"] == 2 and info[b"UIDNEXT"] == 3
    assert b"\\Seen" in info[b"PERMANENTFLAGS"]
    data = c.fetch([1, 2], ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "UID"])
    assert data[1][b"INTERNALDATE"].timestamp() == pytest.approx(1_600_000_000, abs=1) or True
    assert data[1][b"RFC822.SIZE"] == len(message("first").replace(b"\n", b"\r\n"))
    env = data[2][b"ENVELOPE"]
    assert env.subject == b"=?utf-8?q?caf=C3=A9?= report"
    assert [a.mailbox for a in env.to] == [b"alice", b"bob"] and env.to[1].name == b"Bob B"
    bs = data[2][b"BODYSTRUCTURE"]
    assert bs.is_multipart and bs[1] == b"MIXED"
    parts = bs[0]
    assert parts[0][0] == b"TEXT" and parts[1][0] == b"APPLICATION" and parts[2][0] == b"MESSAGE"
    full = MULTIPART.replace(b"\n", b"\r\n")
    d = c.fetch([2], ["BODY.PEEK[]", "BODY.PEEK[1]", "BODY.PEEK[2.MIME]", "BODY.PEEK[3.HEADER]",
                      "BODY.PEEK[3.1]", "BODY.PEEK[HEADER.FIELDS (SUBJECT CC)]",
                      "BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)]", "BODY.PEEK[TEXT]<0.8>", "BINARY.PEEK[2]",
                      "BINARY.SIZE[1]", "RFC822.HEADER"])[2]
    assert d[b"BODY[]"] == full
    assert d[b"BODY[1]"] == b"Hello caf=C3=A9 world\r\nsecond line"
    assert d[b"BODY[2.MIME]"].startswith(b"Content-Type: application/octet-stream")
    assert d[b"BODY[3.HEADER]"] == b"Subject: inner\r\nFrom: inner@example.org\r\n\r\n"
    assert d[b"BODY[3.1]"] == b"inner body"
    assert d[b"BODY[HEADER.FIELDS (SUBJECT CC)]"] == (b"Cc: carol@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?= report\r\n\r\n")
    assert b"Subject" not in d[b"BODY[HEADER.FIELDS.NOT (SUBJECT)]"]
    assert d[b"BODY[TEXT]<0>"] == b"preamble"
    assert d[b"BINARY[2]"] == b"abcde"
    assert d[b"BINARY.SIZE[1]"] == len("Hello café world\r\nsecond line".encode())
    assert d[b"RFC822.HEADER"].endswith(b"\r\n\r\n")
    # PEEK leaves \Seen alone; BODY[] sets it
    assert b"\\Seen" not in c.get_flags([2])[2]
    r = c.fetch([2], ["BODY[TEXT]"])
    assert b"\\Seen" in r[2][b"FLAGS"]
    c.unselect_folder()
    info = c.select_folder("INBOX", readonly=True)
    assert info[b"READ-ONLY"] == [b""]
    c.fetch([1], ["BODY[]"])  # read-only: no \Seen
    assert b"\\Seen" not in c.get_flags([1])[1]
    c.logout()


def inbox_with(srv, address, count: int):
    """(the Maildir, an imaplib session with INBOX selected) after count deliveries."""
    md = box(srv, address)
    for i in range(count):
        md.deliver(message(f"m{i}"))
    c = imap(srv, address)
    c.select("INBOX")
    return md, c


def test_stored_system_flags_are_what_the_session_and_the_file_name_say(mailserver, user):
    md, c = inbox_with(mailserver, user, 3)
    three = {b"\\Seen", b"\\Flagged", b"\\Answered"}
    typ, data = c.store("1:3", "FLAGS", r"(\Seen \Flagged \Answered)")
    assert typ == "OK" and all(three <= set(d.split(b"(")[-1].rstrip(b")").split()) for d in data)
    c.store("2", "-FLAGS.SILENT", r"(\Flagged)")
    typ, data = c.fetch("1:3", "(FLAGS)")
    got = [set(d.split(b"FLAGS (")[1].rstrip(b"))").split()) - {b"\\Recent"} for d in data]
    assert got == [three, three - {b"\\Flagged"}, three]
    assert sorted(n.rpartition(":2,")[2] for n in os.listdir(md.path / "cur")) == ["FRS", "FRS", "RS"]
    c.logout()


def test_store_flags_keywords_and_expunge(mailserver, user):
    md, c = inbox_with(mailserver, user, 5)
    typ, data = c.store("1:2", "+FLAGS", r"(\Flagged $Label1)")
    assert typ == "OK" and b"$Label1" in data[0] and b"\\Flagged" in data[0]
    typ, data = c.store("1", "-FLAGS.SILENT", r"(\Flagged)")
    assert data == [None]
    assert c.store("3", "FLAGS", r"(\Deleted \Seen)")[0] == "OK"
    assert c.uid("STORE", "4", "+FLAGS", r"(\Deleted)")[0] == "OK"
    names = sorted(p.name for p in (md.path / "cur").iterdir())
    assert any(n.endswith(":2,ST") for n in names)
    assert "$Label1" in (md.path / "dovecot-keywords").read_text()
    typ, data = c.expunge()
    assert data == [b"4", b"3"]
    assert c.search(None, "ALL")[1] == [b"1 2 3"]
    c.store("3", "+FLAGS", r"(\Deleted)")
    c.store("2", "+FLAGS", r"(\Deleted)")
    typ, data = c.uid("EXPUNGE", "5")  # UIDPLUS: only UID 5
    assert typ == "OK"
    assert c.uid("SEARCH", None, "ALL")[1] == [b"1 2"]
    assert c.close()[0] == "OK"  # expunges UID 2 silently
    c.select("INBOX")
    assert c.uid("SEARCH", None, "ALL")[1] == [b"1"]
    with pytest.raises(imaplib.IMAP4.error, match="keyword|flag"):
        c.store("1", "+FLAGS", r"(\Bogus)")
    c.logout()


def test_search_keys(mailserver, user):
    md = box(mailserver, user)
    md.deliver(message("apple pie", body="the quick brown fox"), internaldate=1_600_000_000)
    md.deliver(message("banana", body="lazy dog", sender="zed@example.net", extra="X-Tag: green"),
               flags=["\\Seen", "\\Answered"])
    md.deliver(MULTIPART.replace(b"\r\n", b"\n"), flags=["\\Flagged"])
    c = imap(mailserver, user)
    c.select("INBOX")

    def s(*crit, uid=False, charset=None):
        if crit and isinstance(crit[-1], (bytes, str)) and any(ord(ch) > 127 for ch in str(crit[-1], "utf-8") if True) \
                if isinstance(crit[-1], bytes) else any(ord(ch) > 127 for ch in crit[-1]):
            last = crit[-1] if isinstance(crit[-1], bytes) else crit[-1].encode()
            c.literal = last   # imaplib sends 8-bit search strings as a literal
            crit = crit[:-1]
        typ, data = c.uid("SEARCH", charset, *crit) if uid else c.search(charset, *crit)
        assert typ == "OK", data
        return data[0].decode().split()
    assert s("ALL") == ["1", "2", "3"]
    assert s("SUBJECT", "apple") == ["1"]
    assert s("SUBJECT", "café", charset="UTF-8") == ["3"]
    assert s("BODY", "caf\u00e9 world".encode(), charset="UTF-8") == ["3"]
    assert s("TEXT", "lazy") == ["2"]
    assert s("FROM", "zed") == ["2"]
    assert s("TO", "bob") == ["3"]
    assert s("CC", "carol") == ["3"]
    assert s("BCC", "x") == []
    assert s("HEADER", "X-Tag", "green") == ["2"]
    assert s("SEEN") == ["2"] and s("UNSEEN") == ["1", "3"]
    assert s("ANSWERED") == ["2"] and s("UNANSWERED") == ["1", "3"]
    assert s("FLAGGED") == ["3"] and s("UNFLAGGED") == ["1", "2"]
    assert s("DELETED") == [] and s("UNDELETED") == ["1", "2", "3"]
    assert s("DRAFT") == [] and s("UNDRAFT") == ["1", "2", "3"]
    # delivered with flags goes straight to cur/, so only message 1 is \\Recent
    assert s("RECENT") == ["1"] and s("NEW") == ["1"] and s("OLD") == ["2", "3"]
    assert s("KEYWORD", "$X") == [] and s("UNKEYWORD", "$X") == ["1", "2", "3"]
    assert s("LARGER", "400") == ["3"] and s("SMALLER", "400") == ["1", "2"]
    assert s("BEFORE", "1-Jan-2021") == ["1"] and s("SINCE", "1-Jan-2021") == ["2", "3"]
    assert s("ON", "13-Sep-2020") == ["1"]
    assert s("SENTON", "2-Jan-2023") == ["1", "2"] and s("SENTBEFORE", "3-Jan-2023") == ["1", "2"]
    assert s("SENTSINCE", "3-Jan-2023") == ["3"]
    assert s("NOT", "SEEN", "OR", "FLAGGED", "SUBJECT", "apple") == ["1", "3"]
    assert s("(SEEN ANSWERED)") == ["2"]
    assert s("2:*") == ["2", "3"] and s("UID", "1,3") == ["1", "3"]
    assert s("ALL", uid=True) == ["1", "2", "3"]
    typ, data = c.search("ISO-2022-XX", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0]
    with pytest.raises(imaplib.IMAP4.error):
        c.search(None, "FOO")
    c.logout()


def test_folders_list_status_subscribe_rename_delete(mailserver, user):
    c = imapclient.IMAPClient("127.0.0.1", port=mailserver.port("imap"), ssl=False, timeout=20)
    c.login(user, PASSWORD)
    c.create_folder("Projects/2024/Q1")
    c.create_folder("Caf\u00e9 \u2615")
    folders = {f[2]: f[0] for f in c.list_folders()}
    assert b"\\HasChildren" in folders["Projects"] and b"\\HasNoChildren" in folders["Projects/2024/Q1"]
    assert b"\\Sent" in folders["Sent"] and "Caf\u00e9 \u2615" in folders
    assert (box(mailserver, user).path / ".Caf&AOk- &JhU-").is_dir()
    assert [f[2] for f in c.list_folders("", "Projects/%")] == ["Projects/2024"]
    assert [f[2] for f in c.list_folders("Projects/", "*")] == ["Projects/2024", "Projects/2024/Q1"]
    assert c.list_folders("", "") and c.list_folders("", "")[0][1] == b"/"
    c.subscribe_folder("Projects/2024/Q1")
    assert "Projects/2024/Q1" in [f[2] for f in c.list_sub_folders()]
    c.unsubscribe_folder("Projects/2024/Q1")
    assert "Projects/2024/Q1" not in [f[2] for f in c.list_sub_folders()]
    c.rename_folder("Projects", "Work")
    names = [f[2] for f in c.list_folders()]
    assert "Work/2024/Q1" in names and "Projects" not in names
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="ALREADYEXISTS"):
        c.create_folder("Work")
    c.append("Work/2024/Q1", message("x"), flags=[b"\\Seen"])
    st = c.folder_status("Work/2024/Q1", ["MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN"])
    assert st[b"MESSAGES"] == 1 and st[b"UNSEEN"] == 0 and st[b"UIDNEXT"] == 2
    c.delete_folder("Work/2024/Q1")
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="NONEXISTENT"):
        c.select_folder("Work/2024/Q1")
    with pytest.raises(imapclient.exceptions.IMAPClientError):
        c.delete_folder("INBOX")
    c.logout()


def test_append_copy_move_uidplus_and_literals(mailserver, user):
    c = imap(mailserver, user)
    typ, data = c.append("INBOX", r"(\Seen \Flagged)", imaplib.Time2Internaldate(1_500_000_000),
                         message("appended"))
    assert typ == "OK" and b"APPENDUID" in data[0]
    uid = int(data[0].split()[2].rstrip(b"]"))
    md = box(mailserver, user)
    msg = md.folder("INBOX").sync()[0]
    assert msg.uid == uid and msg.mtime == 1_500_000_000 and msg.flags == {"\\Seen", "\\Flagged"}
    assert b"\r\n" not in md.folder("INBOX").read(msg)   # stored with LF
    typ, data = c.append("Nope", None, None, message("x"))
    assert typ == "NO" and b"TRYCREATE" in data[0]
    # a non-synchronising literal (LITERAL+)
    raw = message("plus")
    tag = c._new_tag().decode()
    c.send(f'{tag} APPEND INBOX {{{len(raw)}+}}\r\n'.encode() + raw + b"\r\n")
    line = c.readline()
    while line.startswith(b"*"):
        line = c.readline()
    assert line.startswith(tag.encode() + b" OK [APPENDUID")
    c.select("INBOX")
    typ, data = c.copy("1:2", "Archive")
    assert typ == "OK" and b"COPYUID" in data[0]
    typ, data = c.uid("MOVE", "2", "Trash")
    assert typ == "OK"
    assert len(md.folder("Trash").sync()) == 1 and len(md.folder("INBOX").sync()) == 1
    assert len(md.folder("Archive").sync()) == 2
    assert c._untagged_response("OK", [None], "OK") or True
    typ, data = c._simple_command("MOVE", "1", "Junk")
    assert typ == "OK"
    assert c.select("INBOX")[1] == [b"0"]
    c.logout()


def test_quota_unselect_enable_check(mailserver, user):
    c = imap(mailserver, user)
    assert c.enable("CONDSTORE")[0] == "OK"
    typ, data = c.getquotaroot("INBOX")
    assert typ == "OK" and data[0] == [b'INBOX ""']
    c.select("INBOX")
    assert c.check()[0] == "OK"
    assert c._simple_command("UNSELECT")[0] == "OK"
    with pytest.raises(imaplib.IMAP4.error, match="needs a selected folder"):
        c._simple_command("FETCH", "1", "FLAGS")   # nothing selected any more
    c.logout()


def test_quota_and_appendlimit_from_settings(tmp_path):
    from helpers_mail import add_users, configure, new_root, running
    root = new_root(tmp_path / "r")
    add_users(root, ["q"], quota_mb=1)
    configure(root, {"mailbox.append_limit_mb": 0})
    with running(root, ("imap",)) as srv:
        c = imap(srv, "q@example.com")
        assert "APPENDLIMIT=0" in c.capabilities or "APPENDLIMIT=0" in c.capability()[1][0].decode()
        typ, data = c.getquotaroot("INBOX")
        assert data[1] == [b'"" (STORAGE 0 1024)']
        typ, data = c.append("INBOX", None, None, message("x"))
        assert typ == "NO" and b"TOOBIG" in data[0]
        configure(root, {"mailbox.append_limit_mb": 10})
        srv.reload()
        typ, data = c.append("INBOX", None, None, b"Subject: big\n\n" + b"x" * 1_100_000)
        assert typ == "NO" and b"OVERQUOTA" in data[0]
        assert c.append("INBOX", None, None, message("fits"))[0] == "OK"
        c.logout()


def test_idle_and_two_sessions_see_each_other(mailserver, user):
    md = box(mailserver, user)
    md.deliver(message("a"))
    md.deliver(message("b"))
    one = imapclient.IMAPClient("127.0.0.1", port=mailserver.port("imap"), ssl=False, timeout=20)
    two = imapclient.IMAPClient("127.0.0.1", port=mailserver.port("imap"), ssl=False, timeout=20)
    for cl in (one, two):
        cl.login(user, PASSWORD)
        cl.select_folder("INBOX")
    one.idle()
    two.add_flags([1], [b"\\Flagged"])
    events = one.idle_check(timeout=5)
    assert any(e[1] == b"FETCH" and b"\\Flagged" in e[2][e[2].index(b"FLAGS") + 1] for e in events if len(e) > 2)
    # mail delivered to the store wakes the IDLE session within 2 s
    from engine import delivery
    rt = mailserver.runtime
    start = time.monotonic()
    out = delivery.deliver(rt.root, rt.settings, rt.directory, "carol@example.org", [user], message("c"), "test")
    assert out.delivered == [user]
    events = []
    while not any(e[1] == b"EXISTS" for e in events) and time.monotonic() - start < 5:
        events += one.idle_check(timeout=1)
    assert (3, b"EXISTS") in events and time.monotonic() - start < 3
    one.idle_done()
    two.delete_messages([2])
    two.expunge()
    resp = one.noop()
    assert (2, b"EXPUNGE") in resp[1]
    assert one.search("ALL") == [1, 3]   # imapclient searches by UID
    one.logout()
    two.logout()


def test_single_fetches_read_cached_evicted_and_moved_messages(mailserver, user):
    """A FETCH of a few whole messages reads them in the event loop only when the kernel
    has them in memory; a file evicted from the page cache, or renamed by another process
    since SELECT, is read in a worker thread. Each way gives the same bytes."""
    import os
    md = box(mailserver, user)
    bodies = [message(f"m{i}", body="line\n" * (200 * (i + 1))) for i in range(3)]
    for data in bodies:
        md.deliver(data)
    c = imap(mailserver, user)
    c.select("INBOX")
    inbox = md.path / "cur"
    files = sorted(os.listdir(inbox))
    assert len(files) == 3          # SELECT moved them from new/ to cur/
    fd = os.open(inbox / files[1], os.O_RDONLY)   # evict message 2 from the page cache
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    os.rename(inbox / files[2], inbox / (files[2].partition(":")[0] + ":2,F"))  # another process's flag
    for uid, data in enumerate(bodies, 1):
        typ, got = c.uid("FETCH", str(uid), "(RFC822.SIZE BODY.PEEK[])")
        assert typ == "OK"
        [(head, body)] = [part for part in got if isinstance(part, tuple)]  # beside untagged FLAGS news
        assert body == data.replace(b"\n", b"\r\n")
        assert b"RFC822.SIZE %d" % len(body) in head
    typ, got = c.uid("FETCH", "1:3", "(BODY.PEEK[])")
    assert [part[1] for part in got if isinstance(part, tuple)] == [d.replace(b"\n", b"\r\n") for d in bodies]
    c.logout()


def test_sizes_measured_by_a_fetch_are_saved_for_other_processes(mailserver, user):
    """A folder filled by another MTA (names without ,S=/,W=): a client's first FETCH of
    RFC822.SIZE measures every file. The sizes are written to dovecot-uidlist when the
    command ends, so another serving process (a POP3 login) need not read the files."""
    from engine.maildir import SAVE_SIZES_BATCH
    md = box(mailserver, user)
    count = SAVE_SIZES_BATCH + 10
    sizes = {}
    for i in range(count):
        base = f"{1700000000 + i}.M{i}P9.mx"
        data = b"Subject: %d\n\n" % i + b"z" * (i % 300)
        (md.path / "new" / base).write_bytes(data)
        sizes[base] = (len(data), len(data) + data.count(b"\n"))
    c = imap(mailserver, user)
    c.select("INBOX")
    typ, got = c.fetch("1:*", "(RFC822.SIZE)")
    assert typ == "OK" and len(got) == count
    saved = {}
    for line in (md.path / "dovecot-uidlist").read_text().splitlines()[1:]:
        keys, _, name = line.partition(" :")
        fields = dict((k[0], int(k[1:])) for k in keys.split()[1:])
        saved[name.partition(":")[0]] = (fields.get("S"), fields.get("W"))
    assert saved == sizes
    assert sorted(int(x.split()[-1].rstrip(b")")) for x in got) == sorted(w for _, w in sizes.values())
    c.logout()
