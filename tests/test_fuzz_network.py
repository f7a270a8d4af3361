"""The network fuzzer, short and seeded: generated SMTP, IMAP and POP3 sessions against a
real `mailctl serve` with two serving processes. Any finding fails (tests/netfuzz.py says
what counts); `python bench/fuzz.py` runs the long version."""
from __future__ import annotations

import os

import pytest

from engine.maildir import Maildir

import netfuzz
from helpers_server import make_root, serve_process

SEED = int(os.environ.get("MAILCTL_FUZZ_SEED", "20261204"))


def fuzz_root(tmp_path):
    accounts = {u: netfuzz.PASSWORD for u in netfuzz.USERS + (netfuzz.POP_USER,)}
    root = make_root(tmp_path, accounts=accounts, settings=netfuzz.SETTINGS)
    box = Maildir(root.mail_dir / "example.com" / "fuzzpop")
    for i in range(20):
        box.deliver(f"Subject: pop {i}\r\n\r\nbody {i}\r\n".encode())
    return root


@pytest.mark.timeout(400)
def test_seeded_network_fuzz_finds_nothing(tmp_path):
    root = fuzz_root(tmp_path)
    with serve_process(root, args=("--processes", "2")) as srv:
        fuzzer = netfuzz.Fuzzer(srv.ports, root, seed=SEED)
        stats = fuzzer.run(seconds=120, smtp=300, imap=300, pop3=200, managesieve=100)
        fuzzer.check_mail(root.mail_dir)
        fuzzer.check_log(root.log_dir / "mailctl.log")
        assert srv.proc.poll() is None
    print(f"fuzz seed {SEED}: sessions {stats.sessions}, commands {stats.commands}, messages {stats.messages}")
    assert sum(stats.sessions.values()) >= 300
    assert not stats.findings, "\n".join(stats.findings[:20])
