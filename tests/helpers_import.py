"""Helpers for import tests: a target root with accounts, and reading what landed."""
from __future__ import annotations

import os
from pathlib import Path

from engine import directory_edit
from engine import settings as settings_mod
from engine.maildir import Maildir
from engine.root import Root
from engine.newroot import init_root
from helpers_backup import password_hash


def target_root(path: Path, *addresses: str) -> Root:
    root = Root(path)
    init_root(root, hostname="mail.example.com", high_ports=True)
    settings = settings_mod.load(root.config_file)
    for d in sorted({a.split("@")[1] for a in addresses}):
        directory_edit.add_domain(root, settings, d)
    for a in addresses:
        directory_edit.add_account(root, settings, a, password_hash())
    return root


def folder_messages(root: Root, address: str, folder: str = "INBOX"):
    local, domain = address.split("@")
    f = Maildir.for_account(root, domain, local).folder(folder)
    return f, f.sync()


def message_ids(root: Root, address: str) -> list[bytes]:
    """Every Message-ID in every folder of the account (one entry per stored file)."""
    from engine.importers.common import header_value
    local, domain = address.split("@")
    out = []
    top = root.mail_dir / domain / local
    for dirpath, _, files in os.walk(top):
        if Path(dirpath) != top and os.path.basename(dirpath) in ("cur", "new"):
            for name in files:
                out.append(header_value(Path(dirpath, name).read_bytes(), b"message-id"))
    return out
