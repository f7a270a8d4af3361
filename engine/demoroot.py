"""`mailctl quickstart`'s root: a new mail root with a demo domain and one account whose
password is made here (and shown once by the CLI)."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from . import directory_edit, newroot, passwords, privileges, settings as settings_mod
from .root import TOML_MODE, Root, atomic_write


@dataclass
class DemoAccount:
    address: str
    password: str


def create(root: Root, domain: str, local: str, hostname: str, high_ports: bool,
           any_port: bool = False) -> DemoAccount:
    """A new root (unprivileged ports when asked or not root; with any_port every listener
    on 127.0.0.1 with a free port, for tests) holding the domain and the account."""
    values = {"server.postmaster": f"{local}@{domain}"}   # RFC 5321's postmaster: the admin's account
    if os.geteuid() == 0 and privileges.unreachable_parent(root.path) is not None:
        values["server.user"] = "root"     # the serving user could not reach a root under a closed folder
    newroot.init_root(root, hostname=hostname, high_ports=high_ports or newroot.wants_high_ports(),
                      values=values)
    if any_port:
        values["server.hostname"] = hostname
        for name in settings_mod.LISTENERS:
            values[f"listeners.{name}.bind"] = ["127.0.0.1"]
            values[f"listeners.{name}.port"] = 0
        atomic_write(root.config_file, settings_mod.render_sample(values), mode=TOML_MODE)
    cfg = settings_mod.load(root.config_file, "mailctl.toml")
    directory_edit.add_domain(root, cfg, domain)
    password = secrets.token_urlsafe(12)
    address = directory_edit.add_account(root, cfg, f"{local}@{domain}", passwords.hash_password(password), "Demo")
    return DemoAccount(address, password)
