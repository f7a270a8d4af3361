"""limits.max_message_size_mb is worked out once (settings.message_size_limit): SMTP's
SIZE and `mailctl send` refuse and accept the same sizes, and 0 means
the same ceiling of 1 GiB on every way in."""
from __future__ import annotations

import smtplib

from conftest import run_cli
from engine import settings as settings_mod
from engine.settings import MESSAGE_SIZE_CEILING, message_size_limit
from helpers_server import make_root, running_server


def message(size: int) -> bytes:
    head = b"From: alice@example.com\nTo: alice@example.com\nSubject: size\n\n"
    return head + b"x" * (size - len(head) - 1) + b"\n"


def ehlo_size(server) -> int:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        s.ehlo("client.test")
        return int(s.esmtp_features["size"])


def test_smtp_and_mailctl_send_apply_the_same_limit(tmp_path):
    root = make_root(tmp_path, accounts={"alice@example.com": "alice-password-1"},
                     settings={"limits.max_message_size_mb": 0.01, "queue.offline": True})
    limit = message_size_limit(settings_mod.load(root.config_file))
    assert limit == 10485
    with running_server(root) as server:
        assert ehlo_size(server) == limit
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
            s.ehlo("client.test")
            code, _ = s.mail("bob@far.example", ["SIZE=%d" % (limit + 1)])
            assert code == 552
    too_big = run_cli(root, "send", "alice@example.com", input=message(limit + 100))
    assert too_big.code == 1 and f"{limit} bytes" in too_big.err
    assert run_cli(root, "send", "alice@example.com", input=message(limit // 2)).code == 0


def test_zero_is_the_ceiling_on_smtp_too(tmp_path):
    """0 used to mean 'no SIZE limit' on SMTP but 1 GiB for sendmail and mailctl send."""
    root = make_root(tmp_path, settings={"limits.max_message_size_mb": 0})
    assert message_size_limit(settings_mod.load(root.config_file)) == MESSAGE_SIZE_CEILING
    with running_server(root) as server:
        assert ehlo_size(server) == MESSAGE_SIZE_CEILING
