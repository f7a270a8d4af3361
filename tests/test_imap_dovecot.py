"""Dovecot interop: Dovecot started on the same root after our server worked on it sees
the same folders, UIDs, flags and counts; and our server reads a tree Dovecot wrote."""
from __future__ import annotations

import imaplib
import re

import dovecot
from helpers_mail import PASSWORD, add_users, imap, message, new_root, running

USER = "alice@example.com"


def state(c: imaplib.IMAP4) -> dict:
    """{folder: (uidvalidity, uidnext, [(uid, flags, size)])} as a server reports it."""
    out = {}
    typ, data = c.list()
    names = []
    for line in data:
        m = re.match(rb'\((.*?)\) "/" (.*)$', line)
        name = m.group(2).decode().strip('"')
        if b"\\Noselect" not in m.group(1):
            names.append(name)
    for name in sorted(names):
        typ, data = c.status(f'"{name}"', "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
        st = dict(re.findall(rb"(\w+) (\d+)", data[0].split(b"(", 1)[1]))
        typ, sel = c.select(f"\"{name}\"", readonly=True)
        assert typ == "OK", (name, sel)
        msgs = []
        if int(st[b"MESSAGES"]):
            typ, data = c.fetch("1:*", "(UID FLAGS RFC822.SIZE)")
            for item in data:
                line = item if isinstance(item, bytes) else item[0]
                uid = int(re.search(rb"UID (\d+)", line).group(1))
                flags = set(re.search(rb"FLAGS \((.*?)\)", line).group(1).split()) - {b"\\Recent"}
                size = int(re.search(rb"RFC822.SIZE (\d+)", line).group(1))
                msgs.append((uid, tuple(sorted(flags)), size))
        out[name] = (int(st[b"UIDVALIDITY"]), int(st[b"UIDNEXT"]), int(st[b"UNSEEN"]), sorted(msgs))
        c.close()
    return out


def test_envelope_and_bodystructure_match_dovecot(tmp_path):
    from helpers_mail import maildir
    from test_imap_protocol import MULTIPART
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    md = maildir(root)
    md.deliver(MULTIPART)
    md.deliver(message("plain one"))
    md.deliver(b"Subject: odd\nContent-Type: text/html; charset=\"ISO-8859-1\"; format=flowed\n"
               b"Content-Transfer-Encoding: quoted-printable\nContent-Language: en, de\n"
               b"Content-Disposition: inline\nTo: undisclosed-recipients:;\n"
               b"Cc: Team: a@x.org, B <b@y.org>;\n\n<p>hi=20there</p>\n")
    items = ["ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.SIZE", "BODY.PEEK[1.MIME]", "BODY.PEEK[2]",
             "BODY.PEEK[3.1]", "BODY.PEEK[HEADER.FIELDS (SUBJECT TO)]", "BODY.PEEK[TEXT]<4.20>"]

    def collect(c):
        c.select("INBOX", readonly=True)
        return {item: [x if isinstance(x, bytes) else tuple(x) for x in c.fetch("1:*", f"({item})")[1]]
                for item in items}
    with running(root, ("imap",)) as srv:
        c = imap(srv, USER)
        ours = collect(c)
        c.logout()
    with dovecot.dovecot_server(root.path, {USER: PASSWORD}) as dc:
        d = imaplib.IMAP4(dc.host, dc.imap_port, timeout=20)
        d.login(USER, PASSWORD)
        theirs = collect(d)
        d.logout()
    for item in items:   # the same data; only the case of MIME type words differs
        assert repr(ours[item]).upper() == repr(theirs[item]).upper(), (item, ours[item], theirs[item])


def test_dovecot_sees_our_changes_and_we_see_dovecots(tmp_path):
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    # 1. our server works on the mailbox
    with running(root, ("imap",)) as srv:
        c = imap(srv, USER)
        c.create("Projects/2024")
        for i in range(4):
            c.append("INBOX", r"(\Seen)" if i % 2 else None, None, message(f"ours {i}", body="x\n" * i))
        c.append("Projects/2024", r"(\Flagged $Work)", None, message("nested"))
        c.select("INBOX")
        c.store("1", "+FLAGS", r"(\Answered $Label1)")
        c.uid("MOVE", "2", "Archive")
        c.store("3", "+FLAGS", r"(\Deleted)")
        c.expunge()
        ours = state(c)
        c.logout()
    # 2. Dovecot on the same tree sees the same
    with dovecot.dovecot_server(root.path, {USER: PASSWORD}) as dc:
        d = imaplib.IMAP4(dc.host, dc.imap_port, timeout=20)
        d.login(USER, PASSWORD)
        theirs = state(d)
        assert theirs == ours, dc.log_text()[-2000:]
        # Dovecot writes: a folder, a message with flags, a flag change, a move, an expunge
        d.create("FromDovecot/Child")
        d.append("FromDovecot/Child", r"(\Draft)", None, message("dovecot wrote this").replace(b"\n", b"\r\n"))
        d.select("INBOX")
        d.store("1", "+FLAGS", r"(\Flagged)")
        d.uid("COPY", "1", "Trash")
        d.store("2", "+FLAGS", r"(\Deleted)")
        d.expunge()
        after_dovecot = state(d)
        d.logout()
    # 3. our server reads the tree Dovecot wrote
    with running(root, ("imap",)) as srv:
        c = imap(srv, USER)
        assert state(c) == after_dovecot
        c.select('"FromDovecot/Child"')
        typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"dovecot wrote this" in data[0][1]
        c.logout()


def test_pop3_uidls_equal_dovecots_and_a_kept_uidl_is_used_by_both(tmp_path):
    """UIDLs survive a move to Dovecot: ours are Dovecot's default (%08Xu%08Xv), and a
    UIDL kept in a record's P field (mail migrated from another server) wins in both."""
    import poplib
    from helpers_mail import maildir
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    md = maildir(root)
    for i in range(3):
        md.deliver(message(f"pop {i}"))
    uidlist = md.path / "dovecot-uidlist"
    lines = uidlist.read_text().split("\n")
    lines = [("2 Pold-server-uidl-77 " + line[2:]) if line.startswith("2 ") else line for line in lines]
    (md.path / "uidlist.new").write_text("\n".join(lines))
    (md.path / "uidlist.new").rename(uidlist)          # as Dovecot rewrites it

    def uidls(port):
        p = poplib.POP3("127.0.0.1", port, timeout=20)
        p.user(USER)
        p.pass_(PASSWORD)
        listed = [line.split()[1] for line in p.uidl()[1]]
        p.quit()
        return listed

    with running(root, protocols=("pop3",)) as srv:
        ours = uidls(srv.port("pop3"))
    validity = md.folder("INBOX").uidvalidity()
    assert ours == [f"{1:08x}{validity:08x}".encode(), b"old-server-uidl-77", f"{3:08x}{validity:08x}".encode()]
    with dovecot.dovecot_server(root.path, {USER: PASSWORD}, pop3=True) as dc:
        assert uidls(dc.pop3_port) == ours
