"""migrate export / import into a fresh root on another path: same mail over IMAP,
same logins; migrate check against a DNS server on loopback."""
from __future__ import annotations

import imaplib
import json

import pytest

from engine import passwords
from engine import settings as settings_mod
from engine.directory import Directory
from engine.root import Root
from conftest import run_cli
from dnsserver import DNSServer
from helpers_backup import PASSWORD, make_root
from helpers_server import running_server, write_settings


@pytest.fixture
def source(tmp_path) -> Root:
    root = make_root(tmp_path / "old", domains=2, accounts=4, messages=300)
    write_settings(root, {"server.hostname": "mail.example.com"})      # listeners on 127.0.0.1, port 0
    return root


def _imap_view(port: int, user: str) -> dict:
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE      # the roots' self-signed certificate
    c = imaplib.IMAP4("127.0.0.1", port)
    c.starttls(ssl_context=ctx)
    c.login(user, PASSWORD)
    view = {}
    for folder in ("INBOX", "Projects/2024/Q1", "Sent"):
        typ, data = c.select(f'"{folder}"', readonly=True)
        assert typ == "OK", (folder, data)
        n = int(data[0])
        typ, data = c.fetch("1:*", "(UID FLAGS BODY.PEEK[])") if n else ("OK", [])
        view[folder] = sorted(item[1] + item[0].split(b"BODY")[0].split(b"FLAGS")[1] for item in data
                              if isinstance(item, tuple))
    c.logout()
    return view


def test_migrate_export_import_serves_the_same_mail_and_logins(source, tmp_path):
    bundle = tmp_path / "moving.tar.gz"
    with running_server(source) as srv:       # export while the server runs
        r = run_cli(source, "migrate", "export", str(bundle))
        assert r.code == 0, r.err
        before = _imap_view(srv.ports["imap"], "user0@d0.example")
    new_path = tmp_path / "elsewhere" / "root"
    r = run_cli(None, "migrate", "import", str(bundle), "--root", str(new_path))
    assert r.code == 0, r.err
    assert "match the bundle's manifest" in r.out
    new = Root(new_path)
    settings = settings_mod.load(new.config_file)
    directory = Directory.load(new, settings)
    for i in range(4):
        acc = directory.login(f"user{i}@d{i % 2}.example")
        assert acc is not None and passwords.verify(acc.password, PASSWORD)
    assert (new.dkim_dir / "d0.example.s1.key").read_bytes() == (source.dkim_dir / "d0.example.s1.key").read_bytes()
    with running_server(new) as srv:
        after = _imap_view(srv.ports["imap"], "user0@d0.example")
    assert after == before and sum(len(v) for v in after.values()) > 0
    # a bundle is only unpacked into an empty place
    r = run_cli(None, "migrate", "import", str(bundle), "--root", str(new_path))
    assert r.code == 1 and "not empty" in r.err
    r = run_cli(source, "migrate", "export", str(tmp_path / "x.zip"))
    assert r.code == 1 and ".tar.gz" in r.err


def test_migrate_import_reports_a_damaged_bundle(source, tmp_path):
    bundle = tmp_path / "b.tar.gz"
    assert run_cli(source, "migrate", "export", str(bundle)).code == 0
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x55
    bundle.write_bytes(bytes(data))
    r = run_cli(None, "migrate", "import", str(bundle), "--root", str(tmp_path / "new"))
    assert r.code == 1 and "damaged" in r.err
    assert not (tmp_path / "new" / "mailctl.toml").exists()


def test_migrate_check_compares_live_dns(source):
    from engine.outbound import dkim
    key = dkim.keys(source, "d0.example")[0]
    zone = {
        "d0.example": {"MX": [(10, "mail.example.com")], "TXT": ["v=spf1 mx -all"]},
        key.record_name: {"TXT": [key.record]},
        "_dmarc.d0.example": {"TXT": ["v=DMARC1; p=reject"]},
        "d1.example": {"MX": [(10, "other.example.net")]},
        "mail.example.com": {"A": ["127.0.0.1"]},
        "1.0.0.127.in-addr.arpa": {"PTR": ["mail.example.com."]},
    }
    dns_server = DNSServer(zone)
    try:
        r = run_cli(source, "migrate", "check", "--resolver", dns_server.address, "--ip", "127.0.0.1", "--json")
    finally:
        dns_server.close()
    assert r.code == 1                       # d1.example is not ready
    rows = {(row["domain"], row["type"], row["name"]): row["status"] for row in json.loads(r.out)}
    assert rows[("d0.example", "MX", "d0.example")] == "ok"
    assert rows[("d0.example", "TXT", "d0.example")] == "ok"
    assert rows[("d0.example", "TXT", key.record_name)] == "ok"
    assert rows[("d0.example", "TXT", "_dmarc.d0.example")] == "ok"
    assert rows[("mail.example.com", "A", "mail.example.com")] == "ok"
    assert rows[("mail.example.com", "PTR", "1.0.0.127.in-addr.arpa")] == "ok"
    assert rows[("d1.example", "MX", "d1.example")] == "differs"
    assert rows[("d1.example", "TXT", "_dmarc.d1.example")] == "missing"
    r = run_cli(source, "migrate", "check", "--no-lookup")
    assert r.code == 0 and "v=spf1 mx -all" in r.out and key.record_name in r.out
    r = run_cli(source, "migrate", "check", "--resolver", "not-an-ip")
    assert r.code == 1 and "--resolver" in r.err
