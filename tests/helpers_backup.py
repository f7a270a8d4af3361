"""Fast generation of populated mail roots for backup, restore and migration tests.

Accounts are made with the real directory and store; messages are written straight
into cur/ in Maildir format (as Dovecot names them), then the store assigns UIDs.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import directory_edit, passwords
from engine import settings as settings_mod
from engine.maildir import Maildir
from engine.root import Root
from engine.newroot import init_root

PASSWORD = "backup-pass-1"
FOLDERS = ["INBOX", "Sent", "Archive", "Projects/2024", "Projects/2024/Q1"]
KEYWORDS = "0 $Junk\n1 work\n"
_HASH: str | None = None


def password_hash() -> str:
    global _HASH
    if _HASH is None:
        _HASH = passwords.hash_password(PASSWORD)
    return _HASH


def message(i: int, account: str, size: int = 600) -> bytes:
    body = (f"Message {i} for {account}.\n" * (size // 30 + 1))[:size]
    return (f"From: sender{i % 97}@example.net\nTo: {account}\nSubject: test {i}\n"
            f"Message-ID: <{i}.{account}@gen.test>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\n{body}\n").encode()


def make_root(path: Path, domains: int = 3, accounts: int = 50, messages: int = 2000,
              hostname: str = "mail.example.com", seed: int = 1) -> Root:
    """A root with `domains` domains, `accounts` accounts spread over them and
    `messages` messages spread over nested folders, with flags and keywords."""
    rnd = random.Random(seed)
    root = Root(path)
    init_root(root, hostname=hostname, high_ports=True)
    settings = settings_mod.load(root.config_file)
    names = [f"d{i}.example" for i in range(domains)]
    for d in names:
        directory_edit.add_domain(root, settings, d)
    from engine.outbound import dkim
    dkim.keygen(root, names[0], selector="s1", algorithm="ed25519")
    # One Maildir made by the store, copied for every account; accounts written to the
    # domain files in one hand edit (a supported way to change the directory).
    template = root.path / "template"
    tbox = Maildir(template)
    tbox.create(list(settings.mailbox.default_folders))
    for f in FOLDERS[3:]:
        if not (template / ("." + f.replace("/", "."))).exists():
            tbox.create_folder(f)
    boxes = []
    entries: dict[str, list[str]] = {d: [] for d in names}
    for i in range(accounts):
        d = names[i % domains]
        (root.mail_dir / d).mkdir(parents=True, exist_ok=True)
        shutil.copytree(template, root.mail_dir / d / f"user{i}", symlinks=True)
        entries[d].append(f'[accounts.user{i}]\npassword = "{password_hash()}"\nname = "User {i}"\n'
                          f'quota_mb = 0\nenabled = true\n')
        boxes.append((f"user{i}@{d}", Maildir.for_account(root, d, f"user{i}")))
    shutil.rmtree(template)
    for d in names:
        with open(root.domain_file(d), "a") as f:
            f.write("\n" + "\n".join(entries[d]))
    now = int(time.time()) - 86400 * 30
    host = "gen"
    for i in range(messages):
        address, box = boxes[i % accounts]
        folder = FOLDERS[rnd.randrange(len(FOLDERS))]
        fdir = box.path if folder == "INBOX" else box.path / ("." + folder.replace("/", "."))
        data = message(i, address, rnd.randrange(200, 1500))
        flags = "".join(sorted(rnd.sample("FRSab", rnd.randrange(0, 3))))
        vsize = len(data) + data.count(b"\n")
        base = f"{now + i}.M{i}P1Q{i}.{host},S={len(data)},W={vsize}"
        sub = "new" if not flags and rnd.random() < 0.2 else "cur"
        name = base if sub == "new" else f"{base}:2,{flags}"
        p = fdir / sub / name
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)   # no O_TRUNC: ext4 flushes on close after it
        os.write(fd, data)
        os.utime(fd, (now + i, now + i))
        os.close(fd)
    for _address, box in boxes:
        for folder in FOLDERS:
            fdir = box.path if folder == "INBOX" else box.path / ("." + folder.replace("/", "."))
            (fdir / "dovecot-keywords").write_text(KEYWORDS)
            box.folder(folder).sync()
    return root


def mail_state(root: Root) -> dict[tuple[str, str], tuple[str, str, float]]:
    """{(folder dir, base name): (sha256, flags, mtime)} of every message under mail/."""
    out = {}
    for dirpath, _dirnames, filenames in os.walk(root.mail_dir):
        sub = os.path.basename(dirpath)
        if sub not in ("cur", "new"):
            continue
        folder = os.path.relpath(os.path.dirname(dirpath), root.path)
        for name in filenames:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            base, _, flags = name.partition(":2,")
            out[(folder, base)] = (digest, flags, os.stat(p).st_mtime)
    return out


@dataclass
class LoadGenerator:
    """Delivers new mail and changes flags on existing mail in a thread, recording what it touched."""
    root: Root
    accounts: list[tuple[str, str]]
    touched: set = field(default_factory=set)
    delivered: int = 0
    flag_changes: int = 0
    errors: list = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rnd = random.Random(7)
        i = 0
        try:
            while not self._stop.is_set():
                d, local = self.accounts[i % len(self.accounts)]
                box = Maildir.for_account(self.root, d, local)
                box.deliver(message(10_000_000 + i, f"{local}@{d}"))
                self.delivered += 1
                folder = box.folder("INBOX")
                msgs = folder.sync()
                for m in rnd.sample(msgs, min(3, len(msgs))):
                    self.touched.add((os.path.relpath(folder.path, self.root.path), m.base))
                    folder.set_flags(m, set(m.flags) ^ {"\\Seen"})
                    self.flag_changes += 1
                i += 1
                time.sleep(0.001)
        except Exception as e:     # reported by the test
            self.errors.append(repr(e))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
