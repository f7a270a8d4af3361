"""SRS on a real server: mail to an account that forwards to another domain reaches an
external sink (an SMTP server on 127.0.0.2, the MX of far.example in the loopback DNS
server) with an SRS0 sender at our domain, whose SPF passes; a bounce to that address
goes back to the original sender; forged, altered and expired ones get 550 5.1.1."""
from __future__ import annotations

import json
import re
import smtplib
import time
from types import SimpleNamespace

import pytest

from dnsserver import DNSServer
from engine import delivery, directory_edit, settings as settings_mod, srs, srs_secret
from engine.directory import Directory
from engine.mailauth import dnslookup, spfcheck
from engine.queue import Queue
from engine.srs_forward import signer
from helpers_server import mailctl, make_root, running_server, serve_process, wait_for_processes
from sinks import Sink

PW = "alice-password-1"
ZONE = {
    "example.com": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},          # ours: this server sends
    "orig.example": {"MX": [(10, "mx.sink.example")], "TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
    "far.example": {"MX": [(10, "mx.sink.example")]},
    "other.example": {"MX": [(10, "mx.sink.example")]},
    "mx.sink.example": {"A": ["127.0.0.2"]},
}
SRS1 = r"SRS1=[A-Za-z0-9+/]{4}=other\.example==abcd=AB=a\.example=u@example\.com"
SRS0 = re.compile(r"SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=orig\.example=carol@example\.com\Z")


@pytest.fixture(scope="module")
def net():
    dns, sink = DNSServer(ZONE), Sink("127.0.0.2")
    yield dns, sink
    sink.stop()
    dns.close()


def server_root(tmp_path, net, **settings):
    dns, sink = net
    values = {"queue.nameservers": [dns.address], "queue.smtp_port": sink.port, "server.hostname": "mx.example.com",
              "queue.retry_minutes": [0, 1], "pickup.enabled": False, **settings}
    root = make_root(tmp_path, accounts={"alice@example.com": PW, "bob@example.com": "bob-password-1",
                                         "dave@example.com": "dave-password-1", "erin@example.com": "erin-pw-1"},
                     settings=values)
    cfg = settings_mod.load(root.config_file)
    directory_edit.set_forward(root, cfg, "bob@example.com", ["bob@far.example"], False)
    directory_edit.set_forward(root, cfg, "dave@example.com", ["dave@far.example"], True)
    directory_edit.set_forward(root, cfg, "erin@example.com", ["gone@far.example"], False)
    return root


@pytest.fixture(scope="module")
def srv(tmp_path_factory, net):
    root = server_root(tmp_path_factory.mktemp("srs"), net)
    with running_server(root) as s:
        yield s, root


def send(srv, sender: str, rcpt: str, subject: str, port: str = "smtp", login: bool = False):
    """The (code, text) of the first refusal, or of DATA."""
    data = (f"From: <{sender or 'mailer-daemon@orig.example'}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(subject))}@test>\r\n\r\nhello\r\n").encode()
    server = srv[0] if isinstance(srv, tuple) else srv      # the fixture's (server, root)
    with smtplib.SMTP("127.0.0.1", server.ports[port], timeout=20) as s:
        s.ehlo("client.example")
        if login:
            s.starttls()
            s.ehlo("client.example")
            s.login("alice@example.com", PW)
        for code, text in (s.mail(sender), s.rcpt(rcpt)):
            if code != 250:
                return code, text.decode()
        code, text = s.data(data)
        return code, text.decode()


def arrived(sink, subject: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in list(sink.messages) if f"Subject: {subject}".encode() in m.data]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{subject!r} never reached the sink: {[m.recipients for m in sink.messages]}")


def spf(dns, peer: str, sender: str, helo: str) -> str:
    """SPF as our own check computes it, against the loopback DNS server."""
    cfg = SimpleNamespace(queue=SimpleNamespace(nameservers=[dns.address]), mailauth=SimpleNamespace(dns_timeout_s=5, dns_cache_entries=0))
    return spfcheck.check_spf(dnslookup.resolver_for(cfg), peer, sender, helo).result


def forwarded(srv, net, subject: str, sender: str = "carol@orig.example", rcpt: str = "bob@example.com"):
    """The copy of a message to rcpt that reached the sink."""
    _, sink = net
    code, text = send(srv, sender, rcpt, subject)
    assert code == 250, text
    [m] = arrived(sink, subject)
    return m


def test_a_forwarded_copy_carries_an_srs0_sender_of_ours_that_passes_spf(srv, net):
    dns, _ = net
    m = forwarded(srv, net, "forward one")
    assert m.recipients == ["bob@far.example"]
    assert SRS0.match(m.sender), m.sender
    assert spf(dns, m.peer, m.sender, m.helo) == "pass"
    # what SRS is for: the original sender fails the receiver's SPF check
    assert spf(dns, m.peer, "carol@orig.example", m.helo) == "fail"


def test_a_bounce_to_the_srs_address_reaches_the_original_sender(srv, net):
    _, sink = net
    m = forwarded(srv, net, "forward two")
    code, text = send(srv, "", m.sender, "bounce two")
    assert code == 250, text
    [b] = arrived(sink, "bounce two")
    assert b.recipients == ["carol@orig.example"] and b.sender in ("", "<>")


def test_a_case_smashed_srs_address_still_reverses(srv, net):
    """Some MTAs lower-case local parts: the hash is compared without case (as libsrs2)."""
    s, root = srv
    _, sink = net
    sign = signer(root, settings_mod.load(root.config_file))
    sender = next(a for a in (f"carol{n}@orig.example" for n in range(5000))
                  if any(c.isupper() for c in srs.forward(sign, a, "example.com", time.time())[5:9]))
    m = forwarded(srv, net, "forward three", sender=sender)
    assert m.sender.lower() != m.sender
    assert send(s, "", m.sender.lower(), "bounce three")[0] == 250
    assert arrived(sink, "bounce three")[0].recipients == [sender]


def altered(address: str) -> str:
    h = address[5:9]
    flipped = h[:3] + ("A" if h[3] not in "Aa" else "B")
    return address.replace(h, flipped, 1)


@pytest.mark.parametrize("how", ["hash", "domain", "local", "expired", "future", "garbage", "no hash"])
def test_forged_altered_and_expired_srs_addresses_are_refused(srv, net, how):
    s, root = srv
    cfg = settings_mod.load(root.config_file)
    now = time.time()
    good = srs.forward(signer(root, cfg), "carol@orig.example", "example.com", now)
    address = {
        "hash": altered(good),
        "domain": good.replace("=orig.example=", "=evil.example="),
        "local": good.replace("=carol@", "=mallory@"),
        "expired": srs.forward(signer(root, cfg), "carol@orig.example", "example.com", now - 22 * 86400),
        "future": srs.forward(signer(root, cfg), "carol@orig.example", "example.com", now + 3 * 86400),
        "garbage": "SRS0=zzzz@example.com",
        "no hash": "SRS1==far.example==x=AA=orig.example=carol@example.com",
    }[how]
    before = Queue(root).count()
    code, text = send(s, "", address, f"forged {how}")
    assert (code, text[:5]) == (550, "5.1.1"), (address, code, text)
    assert Queue(root).count() == before


def test_hash_characters_plus_and_slash_reverse(srv, net):
    """base64 (as libsrs2) puts + and / in hashes: such an address is taken too, though
    our own address checks keep / out of the local parts of mailboxes."""
    s, root = srv
    _, sink = net
    sign = signer(root, settings_mod.load(root.config_file))
    for ch in "/+":
        sender = next(a for a in (f"carol{n}@orig.example" for n in range(5000))
                      if ch in srs.forward(sign, a, "example.com", time.time())[5:9])
        address = srs.forward(sign, sender, "example.com", time.time())
        code, text = send(s, "", address, f"bounce {ch}")
        assert code == 250, (address, text)
        assert arrived(sink, f"bounce {ch}")[0].recipients == [sender]


def test_an_srs_address_at_a_domain_not_ours_is_not_relayed(srv, net):
    s, root = srv
    cfg = settings_mod.load(root.config_file)
    address = srs.forward(signer(root, cfg), "carol@orig.example", "far.example", time.time())
    before = Queue(root).count()
    code, text = send(s, "", address, "relay attempt")
    # 550 5.7.1 (relaying denied), or 501 5.1.3 when the hash holds a "/" (never in our local parts)
    assert (code, text[:5]) in ((550, "5.7.1"), (501, "5.1.3")), (address, code, text)
    assert Queue(root).count() == before


def test_an_srs0_sender_forwarded_again_becomes_srs1_and_its_bounce_goes_to_the_first_forwarder(srv, net):
    _, sink = net
    first = "SRS0=abcd=AB=a.example=u@other.example"     # made by another forwarder
    m = forwarded(srv, net, "forward srs1", sender=first)
    # (our server keeps envelope addresses lower-cased; SRS compares without case)
    assert re.fullmatch(SRS1, m.sender, re.IGNORECASE), m.sender
    assert send(srv[0], "", m.sender, "bounce srs1")[0] == 250
    assert [r.lower() for r in arrived(sink, "bounce srs1")[0].recipients] == [first.lower()]
    # an SRS1 sender of someone else's becomes ours, still naming the first forwarder
    again = forwarded(srv, net, "forward srs1 again", sender="SRS1=XyZ1=other.example==abcd=AB=a.example=u@third.example")
    assert re.fullmatch(SRS1, again.sender, re.IGNORECASE), again.sender


def test_a_sender_whose_srs_hash_holds_a_slash_is_taken_forwarded_and_its_bounce_reversed(srv, net):
    """postsrsd's base64 hashes hold '/' in about one address in sixteen: MAIL FROM takes
    it (RFC 5321 atext), and the bounce to our SRS1 form reaches the first forwarder."""
    _, sink = net
    first = "SRS0=Ab/9=AB=a.example=u@other.example"
    m = forwarded(srv, net, "forward slash", sender=first)
    assert re.fullmatch(r"SRS1=[A-Za-z0-9+/]{4}=other\.example==ab/9=AB=a\.example=u@example\.com",
                        m.sender, re.IGNORECASE), m.sender
    assert send(srv[0], "", m.sender, "bounce slash")[0] == 250
    assert [r.lower() for r in arrived(sink, "bounce slash")[0].recipients] == [first.lower()]


def test_our_users_mail_and_local_copies_keep_their_sender(srv, net):
    s, root = srv
    _, sink = net
    code, text = send(s, "alice@example.com", "bob@example.com", "from alice", port="submission", login=True)
    assert code == 250, text
    assert arrived(sink, "from alice")[0].sender == "alice@example.com"
    # dave keeps a copy: the local one has the original Return-Path, the forwarded one SRS
    m = forwarded(srv, net, "kept copy", rcpt="dave@example.com")
    assert m.recipients == ["dave@far.example"] and SRS0.match(m.sender)
    kept = [p.read_bytes() for p in (root.mail_dir / "example.com" / "dave" / "new").iterdir()]
    assert any(b"Return-Path: <carol@orig.example>" in k and b"Subject: kept copy" in k for k in kept)


def test_our_own_dsn_for_a_forwarded_copy_goes_back_to_the_original_sender(srv, net):
    _, sink = net
    sink.rcpt_replies["gone@far.example"] = "550 5.1.1 <gone@far.example>: User unknown"
    code, text = send(srv[0], "carol@orig.example", "erin@example.com", "to be refused")
    assert code == 250, text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        dsns = [m for m in list(sink.messages) if m.sender in ("", "<>") and b"multipart/report" in m.data
                and b"to be refused" in m.data]
        if dsns:
            break
        time.sleep(0.1)
    assert dsns and dsns[0].recipients == ["carol@orig.example"], [(m.sender, m.recipients) for m in sink.messages]
    assert sink.rcpt_log.count("gone@far.example") == 1


def test_one_message_to_relayed_and_forwarded_recipients_goes_out_as_two_queue_items(tmp_path, net):
    root = server_root(tmp_path, net, **{"queue.offline": True})
    cfg = settings_mod.load(root.config_file)
    out = delivery.deliver(root, cfg, Directory.load(root, cfg), "carol@orig.example",
                           ["bob@example.com", "x@far.example"], b"Subject: two\r\n\r\nhi\r\n")
    assert len(out.queue_ids) == 2 and out.queue_id == out.queue_ids[0]
    q = Queue(root)
    envs = {tuple(r.address for r in q.find(i).recipients): q.find(i).sender for i in out.queue_ids}
    assert envs[("x@far.example",)] == "carol@orig.example"         # relayed, not forwarded
    assert SRS0.match(envs[("bob@far.example",)])


def test_switched_off_nothing_is_rewritten_or_reversed(tmp_path, net):
    _, sink = net
    root = server_root(tmp_path, net, **{"srs.enabled": False})
    cfg = settings_mod.load(root.config_file)
    address = srs.forward(signer(root, cfg), "carol@orig.example", "example.com", time.time())
    with running_server(root) as s:
        assert send(s, "carol@orig.example", "bob@example.com", "srs off")[0] == 250
        assert arrived(sink, "srs off")[0].sender == "carol@orig.example"
        code, text = send(s, "", address, "srs off bounce")
        assert code == 550 and text.startswith("5.1.1")


def one_connection_per_process(root, port: int) -> list[smtplib.SMTP]:
    """An SMTP connection to each of the two serving processes (told apart by the
    client address `mailctl who` shows for each)."""
    for attempt in range(20):
        conns = {}
        for n in range(8):
            ip = f"127.0.{attempt + 1}.{n + 1}"
            c = smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=(ip, 0))
            c.ehlo("client.example")
            conns[ip] = c
        who = json.loads(mailctl(root, "who", "--json").stdout)
        sessions = who["sessions"] if isinstance(who, dict) else who
        by_pid = {x["pid"]: x["ip"] for x in sessions if x["protocol"] == "smtp" and x["ip"] in conns}
        chosen = [conns.pop(ip) for ip in by_pid.values()]
        for c in conns.values():
            c.close()
        if len(chosen) == 2:
            return chosen
        for c in chosen:
            c.close()
    raise AssertionError("the kernel never spread the connections over both processes")


def test_two_serving_processes_sign_with_the_one_secret(tmp_path, net):
    """A root from before SRS has no secret: the first serving process to forward makes
    it, and the other one uses the same; a bounce reaches either."""
    _, sink = net
    root = server_root(tmp_path, net, **{"server.processes": 2})
    (root.state_dir / "srs.secret").unlink()
    with serve_process(root) as s:
        wait_for_processes(root, 2)
        conns = one_connection_per_process(root, s.ports["smtp"])
        for n, c in enumerate(conns):
            c.sendmail("carol@orig.example", ["bob@example.com"], f"Subject: two processes {n}\r\n\r\nhi\r\n")
        senders = [arrived(sink, f"two processes {n}")[0].sender for n in range(len(conns))]
        secrets = srs_secret.parse((root.state_dir / "srs.secret").read_text())
        assert len(secrets) == 1
        for sender in senders:
            assert srs.reverse(srs.Signer(secrets), sender, time.time()) == "carol@orig.example"
        for n, c in enumerate(conns):               # each bounce to the other process
            c.sendmail("", [senders[1 - n]], f"Subject: two processes bounce {n}\r\n\r\nback\r\n")
            c.close()
        for n in range(len(conns)):
            assert arrived(sink, f"two processes bounce {n}")[0].recipients == ["carol@orig.example"]


def test_a_message_whose_second_queue_item_cannot_be_committed_is_nowhere(tmp_path, net, monkeypatch):
    """All or nothing with two queue items (an SRS copy and a relayed one): a failing
    commit of the second withdraws the first and the local copy (the sender retries)."""
    import errno

    from engine.queue import StagedItem
    root = server_root(tmp_path, net, **{"queue.offline": True})
    directory_edit.set_forward(root, settings_mod.load(root.config_file), "dave@example.com", ["dave@far.example"], True)
    cfg = settings_mod.load(root.config_file)
    real, calls = StagedItem.commit, []

    def commit(item):
        calls.append(item.envelope.id)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(item)

    monkeypatch.setattr(StagedItem, "commit", commit)
    with pytest.raises(OSError):
        delivery.deliver(root, cfg, Directory.load(root, cfg), "carol@orig.example",
                         ["dave@example.com", "x@far.example"], b"Subject: none\r\n\r\nhi\r\n")
    assert len(calls) == 2 and not Queue(root).all()
    assert not list(Queue(root).dir.glob("messages/*"))
    assert not list((root.mail_dir / "example.com" / "dave" / "new").glob("*"))
