"""Direct MX delivery through the queue runner, against a real DNS server and SMTP sinks
on loopback; retries, DSNs and expiry with an injected clock."""
from __future__ import annotations

import pytest

from dnsserver import DNSServer
from helpers_queue import Harness, base_settings, configure, inbox, local_root, message, parse_dsn
from sinks import sinks_on_one_port

ZONE = {
    "far.example": {"MX": [(10, "mx-down.far.example"), (20, "mx2.far.example")]},
    "mx-down.far.example": {"A": ["127.0.0.9"]},          # nothing listens there: refused
    "mx2.far.example": {"A": ["127.0.0.2"]},
    "amx.example": {"A": ["127.0.0.3"]},                   # no MX: the A record is used
    "other.example": {"MX": [(10, "mx2.far.example")]},
    "gone.example": "NXDOMAIN",
    "broken.example": "SERVFAIL",
    "nomail.example": {"MX": [(0, ".")]},
    "loop.example": {"MX": [(10, "mx.loop.example")]},
    "mx.loop.example": {"A": ["127.0.0.1"]},
}


@pytest.fixture
def net():
    dns = DNSServer(ZONE)
    sinks = sinks_on_one_port("127.0.0.2", "127.0.0.3")
    yield dns, sinks
    for s in sinks:
        s.stop()
    dns.close()


@pytest.fixture
def root(tmp_path_factory, tmp_path):
    return local_root(tmp_path_factory, tmp_path)


@pytest.fixture
def h(root, net):
    dns, sinks = net
    configure(root, base_settings(dns, sinks[0].port))
    harness = Harness(root)
    yield harness
    harness.close()


def bounces(root):
    return [m for m in inbox(root, "alice@example.com") if b"multipart/report" in m]


def test_mx_preference_falls_to_next_host_when_first_refuses(h, net):
    _, (mx2, amx) = net
    qid = h.enqueue("alice@example.com", ["bob@far.example"])
    assert h.run() == 1
    assert [m.recipients for m in mx2.messages] == [["bob@far.example"]]
    assert mx2.messages[0].sender == "alice@example.com"
    assert b"Subject: test" in mx2.messages[0].data
    assert h.queue.count() == 0 and not bounces(h.root)
    assert not (h.queue.body_path(qid)).exists()


def test_no_mx_uses_a_record(h, net):
    _, (mx2, amx) = net
    h.enqueue("alice@example.com", ["carol@amx.example"])
    h.run()
    assert amx.recipients() == ["carol@amx.example"] and not mx2.messages


@pytest.mark.parametrize("domain,status", [("gone.example", "5.1.2"), ("nomail.example", "5.1.10")])
def test_nxdomain_and_null_mx_bounce_at_once(h, domain, status):
    h.enqueue("alice@example.com", [f"x@{domain}"])
    h.run()
    assert h.queue.count() == 0
    [dsn] = bounces(h.root)
    _, rcpts = parse_dsn(dsn)
    assert rcpts[0]["Final-Recipient"] == f"rfc822; x@{domain}"
    assert rcpts[0]["Action"] == "failed" and rcpts[0]["Status"] == status


def test_servfail_defers(h):
    qid = h.enqueue("alice@example.com", ["x@broken.example"])
    h.run()
    env = h.queue.find(qid)
    assert env.state == "deferred" and env.attempts == 1
    assert env.recipients[0].status == "deferred" and "SERVFAIL" in env.recipients[0].reply
    assert env.next_attempt == h.clock() + 60          # retry_minutes [0, 1, 2]
    assert not bounces(h.root)
    assert h.run() == 0                                   # not due yet


def test_temporary_failure_then_success(h, net):
    _, (mx2, _) = net
    mx2.temp_failures["later@far.example"] = 1
    qid = h.enqueue("alice@example.com", ["later@far.example"])
    h.run()
    env = h.queue.find(qid)
    assert env.recipients[0].status == "deferred" and env.recipients[0].code == 451
    assert env.last_error.startswith("451 4.3.0")
    h.clock.advance(61)
    assert h.run() == 1
    assert mx2.recipients() == ["later@far.example"] and h.queue.count() == 0
    assert not bounces(h.root)


def test_one_permanent_failure_of_three(h, net):
    _, (mx2, _) = net
    mx2.rcpt_replies["nobody@far.example"] = "550 5.1.1 <nobody@far.example>: User unknown"
    rcpts = ["a@far.example", "nobody@far.example", "c@far.example"]
    h.enqueue("alice@example.com", rcpts, message("alice@example.com", rcpts, "three recipients"))
    h.run()
    assert sorted(mx2.recipients()) == ["a@far.example", "c@far.example"]
    assert h.queue.count() == 0
    [dsn] = bounces(h.root)
    msg, groups = parse_dsn(dsn)
    assert len(groups) == 1
    g = groups[0]
    assert g["Final-Recipient"] == "rfc822; nobody@far.example"
    assert g["Action"] == "failed" and g["Status"] == "5.1.1"
    assert g["Diagnostic-Code"] == "smtp; 550 5.1.1 <nobody@far.example>: User unknown"
    assert g["Remote-MTA"].startswith("dns; mx2.far.example")
    headers = [p for p in msg.get_payload() if p.get_content_type() == "text/rfc822-headers"][0]
    assert "Subject: three recipients" in headers.as_string()
    assert msg["From"].startswith("Mail Delivery System") and msg["Auto-Submitted"] == "auto-replied"


def test_expiry_bounces_and_delay_notice_is_sent_once(h, root, net):
    _, (mx2, _) = net
    mx2.temp_failures["slow@far.example"] = 100
    qid = h.enqueue("alice@example.com", ["slow@far.example"])
    h.run()
    assert not bounces(root)
    for hours in (5, 6):                  # past delay_notice_hours (4): one notice only
        h.clock.now = h.queue.find(qid).created + hours * 3600
        h.run()
    notices = [m for m in inbox(root, "alice@example.com") if b"Action: delayed" in m]
    assert len(notices) == 1
    _, groups = parse_dsn(notices[0])
    assert groups[0]["Action"] == "delayed" and groups[0]["Status"].startswith("4.")
    assert "Will-Retry-Until" in groups[0]
    h.clock.now = h.queue.find(qid).created + 5 * 86400 + 1       # max_age_days = 5
    h.run()
    assert h.queue.count() == 0
    failed = [m for m in bounces(root) if b"Action: failed" in m]
    assert len(failed) == 1
    _, groups = parse_dsn(failed[0])
    assert groups[0]["Status"].startswith("5.") and "gave up after 5 days" in groups[0]["Diagnostic-Code"]


def test_bounce_of_a_bounce_goes_to_postmaster_never_back(h, root):
    from conftest import run_cli
    assert run_cli(root, "alias", "add", "postmaster@example.com", "bob@example.com").code == 0
    h.reload()
    h.enqueue("", ["x@gone.example"])
    h.run()
    assert h.queue.count() == 0
    assert not bounces(root)
    [notice] = [m for m in inbox(root, "bob@example.com") if b"multipart/report" in m]
    assert b"x@gone.example" in notice


def test_separate_domains_go_in_separate_transactions(h, net, root):
    _, (mx2, _) = net
    mx2.one_domain_per_transaction = True
    rcpts = ["a@far.example", "b@other.example", "c@far.example"]
    h.enqueue("alice@example.com", rcpts)
    h.run()
    assert sorted(mx2.recipients()) == sorted(rcpts)
    assert {tuple(sorted({r.split("@")[1] for r in m.recipients})) for m in mx2.messages} == {
        ("far.example",), ("other.example",)}


def test_max_recipients_per_transaction_splits(h, net, root):
    _, (mx2, _) = net
    configure(root, {"queue.max_recipients_per_transaction": 2})
    h.reload()
    rcpts = [f"u{i}@far.example" for i in range(5)]
    h.enqueue("alice@example.com", rcpts)
    h.run()
    assert sorted(len(m.recipients) for m in mx2.messages) == [1, 2, 2]
    assert len(mx2.messages) == 3


def test_connection_reused_for_several_messages(h, net):
    _, (mx2, _) = net
    for i in range(5):
        h.enqueue("alice@example.com", [f"r{i}@far.example"])
    h.run()
    assert len(mx2.messages) == 5
    assert len({m.data for m in mx2.messages}) == 5


def test_loop_to_ourselves_fails(h, root):
    configure(root, {"queue.smtp_port": 2525})     # our own SMTP listener port on 127.0.0.1
    h.reload()
    h.enqueue("alice@example.com", ["x@loop.example"])
    h.run()
    [dsn] = bounces(root)
    assert b"The Mail Server Software Tried To Deliver E-mail To The Local Machine" in dsn


def test_crash_leftovers_in_active_return_to_deferred(h, root, monkeypatch):
    import time

    from engine import queue as queue_mod
    qid = h.enqueue("alice@example.com", ["bob@far.example"])
    env = h.queue.claim(qid, "otherhost:1")
    assert env is not None and h.queue.ids("active") == [qid]
    assert h.queue.claim(qid, "x:2") is None            # only one claim wins
    # claimed but not yet recorded: its claimer may be alive and about to record the
    # attempt, so a restart of another process leaves it for the grace time ...
    Harness(root, h.clock).close()
    assert h.queue.ids("active") == [qid]
    monkeypatch.setattr(queue_mod, "CLAIM_GRACE_S", 0.2)
    time.sleep(0.3)
    Harness(root, h.clock).close()                        # ... then a restart recovers it
    assert h.queue.ids("deferred") == [qid] and h.queue.ids("active") == []


def test_a_claim_not_yet_recorded_is_not_taken_back_by_a_live_process(h, root):
    """Another serving process's periodic recovery meets an item between the claiming
    rename and the claim's record: taking it back then would deliver it twice."""
    from engine.outbound.runner import _other_owner_alive
    qid = h.enqueue("alice@example.com", ["bob@far.example"])
    env = h.queue.claim(qid, "x")
    assert h.queue.recover(_other_owner_alive) == []
    env.claim = "otherhost:1"
    h.queue.write_attempt(env)
    assert h.queue.recover(_other_owner_alive) == [qid]   # recorded by a runner that is gone


def test_equal_preference_hosts_share_the_load(h, net):
    dns, (a, b) = net
    dns.set("even.example", {"MX": [(10, "mx2.far.example"), (10, "amx.example")]})
    for i in range(16):
        h.enqueue("alice@example.com", [f"r{i}@even.example"])
    h.run()
    assert len(a.messages) + len(b.messages) == 16
    assert a.messages and b.messages


def test_recovery_makes_an_interrupted_attempt_due_at_once(h, root, net):
    """Postfix retries what a crash interrupted as soon as it starts again; so do we."""
    import os
    import socket
    import time
    from engine.outbound.runner import _owner_alive
    dead, alive = h.enqueue("alice@example.com", ["a@far.example"]), h.enqueue("alice@example.com", ["b@far.example"])
    for qid, pid in ((dead, 999999), (alive, os.getppid())):
        env = h.queue.claim(qid, "x")
        env.claim, env.attempts, env.next_attempt = f"{socket.gethostname()}:{pid}", 1, h.clock() + 3600
        h.queue.write_attempt(env)
    assert h.queue.recover(_owner_alive) == [dead]        # the live runner keeps its item
    env = h.queue.find(dead)
    assert env.state == "deferred" and env.attempts == 1 and env.next_attempt <= time.time()
    assert "interrupted" in env.last_error
    assert h.run() == 1                                    # due now, not in an hour


def test_hand_edited_future_envelope_is_not_sent_early(h, root, net):
    import os
    _, (mx2, _) = net
    qid = h.enqueue("alice@example.com", ["a@far.example"])
    path = h.queue.envelope_path(qid, "deferred")
    text = path.read_text().replace(f"next_attempt = {h.clock()}", f"next_attempt = {h.clock() + 999}")
    path.write_text(text)                                  # an editor: mtime is "now", not the next attempt
    os.utime(path, (h.clock() - 5, h.clock() - 5))
    h.run()
    assert not mx2.messages and h.queue.find(qid).state == "deferred"
    h.clock.advance(1000)
    h.run()
    assert mx2.recipients() == ["a@far.example"]


def test_dns_timeout_defers(h, root, net):
    dns, _ = net
    dns.set("slow.example", "TIMEOUT")
    configure(root, {"queue.dns_timeout_s": 0.5})
    h.reload()
    qid = h.enqueue("alice@example.com", ["x@slow.example"])
    h.run()
    r = h.queue.find(qid).recipients[0]
    assert r.status == "deferred" and "timeout" in r.reply.lower() and not bounces(root)


def test_hold_or_delete_during_delivery_wins(h):
    a = h.enqueue("alice@example.com", ["a@far.example"])
    b = h.enqueue("alice@example.com", ["b@far.example"])
    env_a, env_b = h.queue.claim(a, "me:1"), h.queue.claim(b, "me:1")
    h.queue.hold(a)                       # mailctl queue hold while it is being delivered
    h.queue.delete(b)                     # mailctl queue delete likewise
    env_a.recipients[0].status = "deferred"
    h.queue.finish(env_a)
    h.queue.finish(env_b)
    assert h.queue.find(a).state == "hold" and h.queue.find(a).recipients[0].status == "deferred"
    assert [e.id for e in h.queue.all()] == [a]


def test_two_runners_on_one_root_deliver_each_item_once(h, root, net):
    import threading
    from helpers_queue import Harness as H
    _, (mx2, _) = net
    for i in range(150):
        h.enqueue("alice@example.com", [f"r{i}@far.example"])
    other = H(root, h.clock)
    try:
        t = threading.Thread(target=other.run)
        t.start()
        h.run()
        t.join(60)
    finally:
        other.close()
    got = mx2.recipients()
    assert len(got) == 150 and len(set(got)) == 150
    assert h.runner.stats["sent"] > 0 and other.runner.stats["sent"] > 0    # both took part
    assert h.queue.count() == 0
