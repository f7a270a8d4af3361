"""What the long network fuzz runs (bench/fuzz.py) found, each kept as a small case
against a real `mailctl serve`: a server defect, or a wrong judgement of the fuzzer's
(tests/netfuzz.py), which would otherwise report findings that are not there."""
from __future__ import annotations

import pytest

import netfuzz
from test_fuzz_network import fuzz_root
from helpers_server import serve_process, wait_for_processes


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    root = fuzz_root(tmp_path_factory.mktemp("regressions"))
    with serve_process(root) as srv:
        yield netfuzz.Fuzzer(srv.ports, root, seed=1)


def pop3_login(fuzzer) -> netfuzz.Conn:
    c = netfuzz.Conn(fuzzer.ports["pop3"], fuzzer.source(), fuzzer.stats, "pop3", str(fuzzer.root.path))
    assert c.line().startswith(b"+OK")
    assert fuzzer._pop3_cmd(c, f"USER {netfuzz.POP_USER}".encode()).startswith(b"+OK")
    assert fuzzer._pop3_cmd(c, f"PASS {netfuzz.PASSWORD}".encode()).startswith(b"+OK")
    return c


def test_pop3_capa_is_read_whole_so_later_replies_are_not_mistaken(fuzz_server):
    """Run 1, minute 1: 'no reply within 2 s to RETR 0' (also TOP -1 ..., TOP 999...).
    The server answered at once; the fuzzer had read CAPA's reply as one line, so its
    capability lines stood in for the next replies until a RETR waited for a "." line
    that belonged to no reply."""
    c = pop3_login(fuzz_server)
    try:
        assert fuzz_server._pop3_cmd(c, b"CAPA").startswith(b"+OK")
        assert fuzz_server._pop3_cmd(c, b"STAT").startswith(b"+OK")
        assert fuzz_server._pop3_cmd(c, b"LIST").startswith(b"+OK")
        assert fuzz_server._pop3_cmd(c, b"RETR 0").startswith(b"-ERR")
        assert fuzz_server._pop3_cmd(c, b"TOP -1 4294967296").startswith(b"-ERR")
        assert fuzz_server._pop3_cmd(c, b"RETR 1").startswith(b"+OK")
        assert fuzz_server._pop3_cmd(c, b"NOOP").startswith(b"+OK")
        assert fuzz_server._pop3_cmd(c, b"RSET").startswith(b"+OK")   # nothing deleted: the mail stays
        assert fuzz_server._pop3_cmd(c, b"QUIT").startswith(b"+OK")
    finally:
        c.close()
    assert not fuzz_server.stats.findings


def test_a_failed_login_is_given_the_time_of_its_password_hash(fuzz_server):
    """Run 1, minute 3: 'no reply within 2 s to PASS nope', at load average 18: a wrong
    password is checked against its argon2id hash (0.6-1.1 s on that machine) and then
    waits the failure delay, by design. Judged with a reply limit far below the hash's
    time, a failed login is still no finding; other replies keep the limit."""
    strict = netfuzz.Fuzzer(fuzz_server.ports, fuzz_server.root, seed=2, reply_limit=0.01)
    c = netfuzz.Conn(strict.ports["pop3"], strict.source(), strict.stats, "pop3", str(strict.root.path))
    try:
        assert c.line(5).startswith(b"+OK")
        assert strict._pop3_cmd(c, f"USER {netfuzz.POP_USER}".encode()).startswith(b"+OK")
        assert strict._pop3_cmd(c, b"PASS nope").startswith(b"-ERR")
    finally:
        c.close()
    assert not strict.stats.findings


def test_archiving_between_runs_keeps_every_acknowledged_message(fuzz_server):
    """bench/fuzz.py moves IMAP_USER's mail to Archive after each minute (its COPY 1:*
    INBOX had doubled INBOX until every FETCH 1:* was slow); check_mail still finds
    each acknowledged message there."""
    fuzzer = netfuzz.Fuzzer(fuzz_server.ports, fuzz_server.root, seed=3)
    fuzzer.run(seconds=60, smtp=40, imap=40, pop3=0, managesieve=0)
    moved = fuzzer.archive(fuzz_server.root.mail_dir)
    assert fuzzer.accepted and moved > 0
    archive = fuzz_server.root.mail_dir / "example.com" / "fuzz1" / ".Archive"
    assert sum(1 for _ in (archive / "cur").iterdir()) + sum(1 for _ in (archive / "new").iterdir()) >= moved
    fuzzer.check_mail(fuzz_server.root.mail_dir)
    assert not fuzzer.stats.findings, fuzzer.stats.findings


def test_rss_figures_cover_every_serving_process(tmp_path):
    """Run 1 reported the RSS of one serving process only: every one is counted (the
    supervisor, which serves nothing, is not)."""
    root = fuzz_root(tmp_path)
    with serve_process(root, args=("--processes", "2")) as srv:
        pids = wait_for_processes(root, 2)
        assert sorted(netfuzz.serving_pids(srv.proc.pid)) == sorted(pids)
