"""SORT and THREAD answer as Dovecot does: a few hundred varied messages (tests/sortcorpus.py)
appended through our server, every sort key and thread algorithm asked of us, then of
Dovecot started on the same tree, and the replies compared line for line."""
from __future__ import annotations

import imaplib

import pytest

import dovecot
import sortcorpus
from helpers_mail import PASSWORD, add_users, imap, new_root, running

USER = "alice@example.com"
KEYS = ["ARRIVAL", "DATE", "SUBJECT", "FROM", "TO", "CC", "SIZE", "DISPLAYFROM", "DISPLAYTO"]
COMMANDS = (
    [f"SORT ({k}) UTF-8 ALL" for k in KEYS]
    + [f"SORT (REVERSE {k}) UTF-8 ALL" for k in KEYS]
    + ["UID SORT (REVERSE ARRIVAL) UTF-8 ALL", "SORT (SUBJECT REVERSE DATE) UTF-8 ALL",
       "SORT (FROM SUBJECT) US-ASCII ALL", "UID SORT (DATE) UTF-8 SUBJECT meeting",
       "SORT (REVERSE SIZE ARRIVAL) UTF-8 NOT SEEN", "SORT (DISPLAYTO REVERSE FROM) UTF-8 1:50",
       "THREAD REFERENCES UTF-8 ALL", "UID THREAD REFERENCES UTF-8 ALL",
       "THREAD ORDEREDSUBJECT UTF-8 ALL", "UID THREAD ORDEREDSUBJECT UTF-8 ALL",
       "THREAD REFERENCES UTF-8 SUBJECT budget", "THREAD REFERENCES UTF-8 100:250",
       "THREAD ORDEREDSUBJECT UTF-8 FROM alice"])


def replies(c: imaplib.IMAP4) -> dict[str, list[bytes]]:
    c.select("INBOX", readonly=True)
    out = {}
    for command in COMMANDS:
        words = command.split(" ", 2) if command.startswith("UID") else command.split(" ", 1)
        if command.startswith("UID"):
            typ, data = c.uid(words[1], *words[2:])
        else:
            typ, data = c._simple_command(*words)
            typ, data = c._untagged_response(typ, data, words[0])
        assert typ == "OK", (command, data)
        out[command] = data
    return out


@pytest.mark.skipif(not dovecot.available(), reason="dovecot is not installed")
@pytest.mark.parametrize("seed", [5256, 5957])
def test_sort_and_thread_equal_dovecots(tmp_path, seed):
    root = new_root(tmp_path / "r")
    add_users(root, ["alice"])
    corpus = sortcorpus.messages(300, seed)
    with running(root, ("imap",)) as srv:
        c = imap(srv, USER)
        for i, (msg, when) in enumerate(corpus):
            c.append("INBOX", r"(\Seen)" if i % 3 == 0 else None, f'"{when}"', msg)
        ours = replies(c)
        c.logout()
    with dovecot.dovecot_server(root.path, {USER: PASSWORD}) as dc:
        d = imaplib.IMAP4(dc.host, dc.imap_port, timeout=30)
        d.login(USER, PASSWORD)
        theirs = replies(d)
        d.logout()
    differ = [cmd for cmd in COMMANDS if ours[cmd] != theirs[cmd]]
    for cmd in differ:
        print(cmd, "\n ours  ", ours[cmd], "\n theirs", theirs[cmd])
    assert not differ
