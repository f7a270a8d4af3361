"""The queue runner on a full or read-only disk: an item whose outcome cannot be written
stays queued (nothing lost, nothing sent twice, no crash of the runner) and is written and
retried once there is room; a bounce that cannot be written is owed, never lost; and a
running `mailctl serve` drains its deferred queue by itself after the disk is freed."""
from __future__ import annotations

import smtplib

import pytest

from dnsserver import DNSServer
from helpers_diskfull import full_disk_root, settle_cache, stored_files, wait_until
from helpers_queue import Harness, base_settings, configure, inbox, parse_dsn
from helpers_server import mailctl, serve_process
from sinks import Sink

ZONE = {"far.example": {"MX": [(10, "mx.far.example")]}, "mx.far.example": {"A": ["127.0.0.2"]}}
PW = "alice-password-1"


@pytest.fixture
def net():
    dns = DNSServer(ZONE)
    sink = Sink("127.0.0.2")
    yield dns, sink
    sink.stop()
    dns.close()


@pytest.fixture(params=["tmpfs", "ext4"])
def disk(request, tmp_path, net):
    dns, sink = net
    with full_disk_root(tmp_path, request.param, accounts={"alice@example.com": PW}) as (fs, root):
        configure(root, base_settings(dns, sink.port, **{"queue.offline": False}))
        h = Harness(root)
        try:
            yield fs, h, sink
        finally:
            h.close()


def test_an_outcome_the_disk_cannot_take_is_kept_and_nothing_is_sent_twice(disk):
    fs, h, sink = disk
    sink.temp_failures["later@far.example"] = 1
    qid = h.enqueue("alice@example.com", ["now@far.example", "later@far.example"])
    fs.fill()
    h.run()                                  # now@ sent, later@ 451: the envelope cannot be rewritten
    assert sink.recipients() == ["now@far.example"]
    assert h.queue.ids("active") == [qid] and h.queue.body_path(qid).exists()
    h.run(force=True)                        # still full: kept, not tried again
    assert sink.rcpt_log == ["now@far.example", "later@far.example"]
    fs.unfill()
    h.run()                                  # the outcome is written first...
    env = h.queue.find(qid)
    assert env.state == "deferred" and env.attempts == 1
    assert [r.status for r in env.recipients] == ["sent", "deferred"]
    h.run(force=True)                        # ...then only later@ is tried again
    assert sorted(sink.recipients()) == ["later@far.example", "now@far.example"]
    assert h.queue.count() == 0


def test_a_bounce_the_disk_cannot_take_is_owed_not_lost(disk):
    fs, h, sink = disk
    sink.rcpt_replies["nobody@far.example"] = "550 5.1.1 User unknown"
    qid = h.enqueue("alice@example.com", ["nobody@far.example"])
    fs.fill()
    h.run()                                  # failed, but the bounce to alice cannot be written
    assert not inbox(h.root, "alice@example.com")
    fs.unfill()
    h.run()
    env = h.queue.find(qid)                  # the item stays until its bounce is written
    assert env.notice_due == ["nobody@far.example"] and env.recipients[0].status == "failed"
    h.run(force=True)
    [dsn] = inbox(h.root, "alice@example.com")
    _, groups = parse_dsn(dsn)
    assert groups[0]["Final-Recipient"] == "rfc822; nobody@far.example" and groups[0]["Status"] == "5.1.1"
    assert h.queue.count() == 0
    assert sink.rcpt_log == ["nobody@far.example"]       # never sent again


def test_a_read_only_disk_leaves_the_queue_as_it_was(disk):
    fs, h, sink = disk
    qid = h.enqueue("alice@example.com", ["x@far.example"])
    before = stored_files(h.root)
    fs.read_only()
    try:
        h.run(force=True)                     # the claim (a rename) fails: nothing tried
        assert stored_files(h.root) == before and not sink.messages
    finally:
        fs.read_write()
    h.run(force=True)
    assert sink.recipients() == ["x@far.example"] and h.queue.count() == 0
    assert qid not in stored_files(h.root)


def test_serve_drains_the_deferred_queue_by_itself_once_the_disk_has_room(tmp_path, net):
    """mailctl serve on a full disk: SMTP refuses with 452, the deferred item (its
    destination answers 451 meanwhile) cannot be rewritten; after the filler is removed,
    the next message is taken and both leave through the queue without a restart."""
    dns, sink = net
    sink.temp_failures["x@far.example"] = 10**6
    settings = {**base_settings(dns, sink.port), "queue.offline": False, "queue.retry_minutes": [0, 0.02],
                "relay.trusted_networks": ["127.0.0.1/32"]}
    with full_disk_root(tmp_path, "ext4", settings=settings) as (fs, root), serve_process(root) as srv:
        assert mailctl(root, "send", "-f", "alice@example.com", "x@far.example",
                       input="Subject: first\n\nhi\n").returncode == 0
        assert wait_until(lambda: "x@far.example" in sink.rcpt_log)     # a first attempt: 451
        fs.fill()
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"]) as c:
            c.ehlo()
            assert c.mail("alice@example.com")[0] == 250
            assert c.rcpt("y@far.example")[0] == 250
            assert c.data(b"Subject: second\r\n\r\nhi\r\n") == (452, b"4.3.1 Insufficient system storage")
        assert wait_until(lambda: sink.rcpt_log.count("x@far.example") >= 2)   # one with the disk full
        assert sink.recipients() == []
        sink.temp_failures.clear()
        fs.unfill()
        settle_cache()
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"]) as c:
            c.sendmail("alice@example.com", ["y@far.example"], b"Subject: second\r\n\r\nhi\r\n")
        assert mailctl(root, "queue", "flush").returncode == 0
        assert sink.wait_for(2, 30), sink.recipients()
        assert sorted(sink.recipients()) == ["x@far.example", "y@far.example"]
        assert wait_until(lambda: stored_files(root) == [])
        assert srv.proc.poll() is None
