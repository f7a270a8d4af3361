"""engine.demoroot: quickstart's root holds the demo account with the password it returns,
and with any_port every listener on 127.0.0.1 with a free port (the CLI: test_quickstart.py)."""
from __future__ import annotations

from engine import demoroot, passwords, settings as settings_mod
from engine.directory import Directory
from engine.root import Root


def test_demo_root_has_the_account_and_with_any_port_free_loopback_ports(tmp_path):
    root = Root(tmp_path / "root")
    demo = demoroot.create(root, "example.test", "demo", "mail.example.test", high_ports=True, any_port=True)
    assert demo.address == "demo@example.test"
    account = Directory.load(root).account(demo.address)
    assert passwords.verify(account.password, demo.password)
    cfg = settings_mod.load(root.config_file)
    assert cfg.server.hostname == "mail.example.test"
    for name in settings_mod.LISTENERS:
        listener = getattr(cfg.listeners, name)
        assert (listener.bind, listener.port) == (["127.0.0.1"], 0), name
