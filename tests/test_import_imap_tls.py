"""import imap over implicit TLS and STARTTLS, from our own server."""
from __future__ import annotations

from engine.maildir import Maildir
from conftest import run_cli
from helpers_import import folder_messages, target_root
from helpers_server import make_root, running_server


def test_import_imap_over_tls_and_starttls(tmp_path):
    src = make_root(tmp_path / "src", accounts={"old@example.com": "old-pass-12"})
    box = Maildir.for_account(src, "example.com", "old")
    box.create_folder("Lists/Python")
    box.deliver(b"Message-ID: <t1@x>\nSubject: one\n\nbody\n", flags={"\\Seen"}, internaldate=1_600_000_000)
    box.deliver(b"Message-ID: <t2@x>\nSubject: two\n\nbody\n", folder="Lists/Python", flags={"\\Flagged"},
                internaldate=1_600_000_100)
    pw = tmp_path / "pw"
    pw.write_text("old-pass-12\n")
    dst = target_root(tmp_path / "dst", "a@new.example")
    with running_server(src) as srv:
        common = ["--host", "127.0.0.1", "--user", "old@example.com", "--password-file", str(pw),
                  "--account", "a@new.example", "--insecure"]
        r = run_cli(dst, "import", "imap", "--port", str(srv.ports["imaps"]), "--tls", *common)
        assert r.code == 0, r.err
        assert "2 imported" in r.out
        r = run_cli(dst, "import", "imap", "--port", str(srv.ports["imap"]), "--starttls", *common)
        assert r.code == 0 and "0 imported, 2 skipped" in r.out
        # without --insecure the self-signed certificate is refused, with a clear line
        r = run_cli(dst, "import", "imap", "--port", str(srv.ports["imaps"]), "--tls", *common[:-1])
        assert r.code == 1 and "cannot log in" in r.err
    f, msgs = folder_messages(dst, "a@new.example", "Lists/Python")
    assert [(m.flags, m.mtime) for m in msgs] == [(frozenset({"\\Flagged"}), 1_600_000_100)]
    f, msgs = folder_messages(dst, "a@new.example")
    assert [(m.flags, m.mtime) for m in msgs] == [(frozenset({"\\Seen"}), 1_600_000_000)]
