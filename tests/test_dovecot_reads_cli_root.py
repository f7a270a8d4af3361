"""A root made entirely with mailctl commands is served by Debian's Dovecot as it is."""
from __future__ import annotations

import imaplib
import re

from conftest import PASSWORD, run_cli
from tests.dovecot import dovecot_server


def test_dovecot_serves_a_root_made_by_mailctl(root, tmp_path):
    assert run_cli(root, "domain", "add", "example.com").code == 0
    assert run_cli(root, "account", "add", "alice@example.com", "--password-stdin", input=PASSWORD).code == 0
    assert run_cli(root, "alias", "add", "sales@example.com", "alice").code == 0
    for i in range(7):
        rcpt = "sales@example.com" if i % 2 else "alice@example.com"
        msg = f"From: x@far.example\r\nTo: {rcpt}\r\nSubject: n{i}\r\n\r\nbody {i}\r\n"
        assert run_cli(root, "deliver", rcpt, input=msg).code == 0
    uidlist = (root.mail_dir / "example.com" / "alice" / "dovecot-uidlist").read_text().splitlines()
    header, records = uidlist[0], uidlist[1:]
    ours = {int(line.split()[0]): line.split(":", 1)[1].partition(":")[0] for line in records}
    validity = int(re.search(r"\bV(\d+)", header).group(1))
    assert sorted(ours) == list(range(1, 8))

    with dovecot_server(root.path, {"alice@example.com": PASSWORD}) as server:
        imap = imaplib.IMAP4(server.host, server.imap_port)
        imap.login("alice@example.com", PASSWORD)
        typ, lines = imap.list('""', "*")
        assert typ == "OK"
        listed = {}
        for line in lines:
            m = re.match(rb'\(([^)]*)\) "(.)" "?([^"]*)"?', line)
            listed[m[3].decode()] = set(m[1].decode().split())
        assert set(listed) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
        for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
            assert f"\\{name}" in listed[name], (name, listed[name])
        typ, data = imap.select("INBOX", readonly=True)
        assert int(data[0]) == 7
        typ, data = imap.response("UIDVALIDITY")
        assert int(data[0]) == validity
        typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        uids = [int(m) for m in re.findall(rb"UID (\d+)", b" ".join(x[0] if isinstance(x, tuple) else x for x in data))]
        assert sorted(uids) == sorted(ours)
        imap.logout()
