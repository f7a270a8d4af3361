"""The queue runner inside `mailctl serve`: mail sent with `mailctl send` while the
server runs goes out at once; `mailctl queue flush` is handed to the server; route
problems show in `mailctl config check`."""
from __future__ import annotations


from dnsserver import DNSServer
from helpers_server import mailctl, make_root, serve_process
from sinks import Sink


def test_send_while_serving_and_flush(tmp_path):
    dns = DNSServer({"far.example": {"MX": [(10, "mx.far.example")]}, "mx.far.example": {"A": ["127.0.0.2"]}})
    sink = Sink("127.0.0.2")
    try:
        root = make_root(tmp_path, settings={"queue.nameservers": [dns.address], "queue.smtp_port": sink.port,
                                             "pickup.enabled": False})
        with serve_process(root):
            r = mailctl(root, "send", "-i", "-f", "a@example.com", "x@far.example",
                        input="From: a@example.com\nTo: x@far.example\nSubject: now\n\nhi\n")
            assert r.returncode == 0, r.stderr
            assert sink.wait_for(1, 10)
            r = mailctl(root, "queue", "flush")
            assert r.returncode == 0 and "running server" in r.stdout
        assert sink.messages[0].recipients == ["x@far.example"]
    finally:
        sink.stop()
        dns.close()


def test_config_check_reports_route_problems(tmp_path):
    root = make_root(tmp_path)
    with open(root.config_file, "a") as f:
        f.write('\n[routes."x.example"]\nhost = "10.0.0.1"\nport = 70000\n')
    r = mailctl(root, "config", "check")
    assert r.returncode == 1
    assert "mailctl.toml:" in r.stderr and "routes.x.example.port: must be a port number" in r.stderr


def test_pickup_inside_serve_sends_a_dropped_file(tmp_path):
    import os
    import time
    dns = DNSServer({"far.example": {"MX": [(10, "mx.far.example")]}, "mx.far.example": {"A": ["127.0.0.2"]}})
    sink = Sink("127.0.0.2")
    try:
        root = make_root(tmp_path, settings={"queue.nameservers": [dns.address], "queue.smtp_port": sink.port,
                                             "pickup.settle_seconds": 0.2})
        with serve_process(root):
            tmp = root.pickup_dir / "note.tmp"
            tmp.write_bytes(b"X-Sender: ops@example.com\r\nX-Receiver: boss@far.example\r\n"
                            b"From: ops@example.com\r\nSubject: from pickup\r\n\r\nhello\r\n")
            os.rename(tmp, root.pickup_dir / "note.eml")
            assert sink.wait_for(1, 15)
            deadline = time.monotonic() + 5
            while (root.pickup_dir / "note.eml").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not (root.pickup_dir / "note.eml").exists()
        m = sink.messages[0]
        assert m.sender == "ops@example.com" and m.recipients == ["boss@far.example"]
        assert b"X-Receiver" not in m.data and b"Subject: from pickup" in m.data
    finally:
        sink.stop()
        dns.close()
