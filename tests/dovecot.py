"""Run Debian's Dovecot against a mail root, for interoperability tests.

Dovecot runs as a foreground child (`dovecot -F -c <config>`) on 127.0.0.1 with free
ports, its own base/state dirs and log in a temp dir, and reads the same Maildir++
layout we write (`<root>/mail/<domain>/<local>`).

    with dovecot_server(root, {"alice@example.test": "secret"}) as dc:
        imaplib.IMAP4(dc.host, dc.imap_port)
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

DOVECOT = "/usr/sbin/dovecot"
SPECIAL_FOLDERS = ("Sent", "Drafts", "Trash", "Junk", "Archive")
START_TIMEOUT = 20.0
START_ATTEMPTS = 3
ROOT_MAIL_USER = "nobody"


def available() -> bool:
    return Path(DOVECOT).is_file()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DovecotServer:
    host: str
    imap_port: int
    pop3_port: int | None
    workdir: Path
    mail_dir: Path
    mail_user: str
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / "dovecot.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def lend_tree(self) -> None:
        """Give the mail tree to Dovecot's mail user (a no-op unless we are root)."""
        if os.getuid() == 0:
            pw = pwd.getpwnam(self.mail_user)
            _chown_tree(self.mail_dir, pw.pw_uid, pw.pw_gid)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        ports = [self.imap_port] + ([self.pop3_port] if self.pop3_port else [])
        if all(_wait_for_port(self.process, p, deadline) for p in ports):
            return
        self.stop(keep_output=True)
        output = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
        self.process.stdout.close()
        raise RuntimeError(f"dovecot did not start (exit {self.process.returncode}):\n"
                           f"{output}\n--- log ---\n{self.log_text()}")

    def stop(self, keep_output: bool = False) -> None:
        """Stop our Dovecot (by its pid) and wait for it."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout and not keep_output:
            proc.stdout.close()


def _config(root: Path, work: Path, imap_port: int, pop3_port: int | None, mail_user: str,
            extra: str = "") -> str:
    mailboxes = "\n".join(
        f"  mailbox {name} {{\n    special_use = \\{name}\n  }}" for name in SPECIAL_FOLDERS)
    protocols = "imap pop3" if pop3_port else "imap"
    pop3 = (f"service pop3-login {{\n  inet_listener pop3 {{\n    address = 127.0.0.1\n"
            f"    port = {pop3_port}\n  }}\n}}\n") if pop3_port else ""
    pw = pwd.getpwnam(mail_user)
    login_user, internal_user = _service_users()
    return f"""\
protocols = {protocols}
listen = 127.0.0.1
base_dir = {work}/run
state_dir = {work}/state
log_path = {work}/dovecot.log
info_log_path = {work}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%d/%n
mail_fsync = always
mail_uid = {pw.pw_uid}
mail_gid = {pw.pw_gid}
first_valid_uid = {pw.pw_uid}
first_valid_gid = {pw.pw_gid}
default_login_user = {login_user}
default_internal_user = {internal_user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {work}/passwd
}}
userdb {{
  driver = static
  args = home={root}/mail/%d/%n
}}
# METADATA (RFC 5464) and CREATE-SPECIAL-USE keep their data in the attribute dictionary
mail_attribute_dict = file:%h/dovecot-attributes
protocol imap {{
  imap_metadata = yes
}}
namespace inbox {{
  separator = /
  inbox = yes
{mailboxes}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
{pop3}{extra.replace("{root}", str(root)).replace("{work}", str(work))}"""


def _service_users() -> tuple[str, str]:
    """Login and internal users: Debian's own when we are root, else ourselves."""
    if os.getuid() == 0 and _user_exists("dovenull") and _user_exists("dovecot"):
        return "dovenull", "dovecot"
    me = pwd.getpwuid(os.getuid()).pw_name
    return me, me


def _mail_user() -> str:
    # Dovecot refuses mail access as root ("Mail access not allowed for root"), so as root
    # the mail processes run as nobody and the tree is lent to nobody while Dovecot runs.
    return ROOT_MAIL_USER if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    if not top.exists():
        return
    os.chown(top, uid, gid)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            with contextlib.suppress(FileNotFoundError):
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _open_ancestors(path: Path) -> list[tuple[Path, int]]:
    """Add o+x to ancestors (pytest's tmp dirs are 0700) so nobody can reach the tree."""
    changed = []
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode & 0o7777
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
            changed.append((parent, mode))
    return changed


def _wait_for_port(proc: subprocess.Popen, port: int, deadline: float) -> bool:
    """Dovecot greets on the port (its default greeting names it: a server of another
    test that took the port first does not count)."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
            s.settimeout(2)
            if b"Dovecot" in s.recv(512):
                return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def dovecot_server(root_path: Path, users: dict[str, str], pop3: bool = False,
                   extra_config: str = "") -> Iterator[DovecotServer]:
    """Start Dovecot serving root_path/mail for users {address: password}; stop it on exit.
    extra_config: more configuration, with {root} and {work} replaced (a test's plugins;
        bench/imap_compress.py: imap_zlib).

    As root, the mail tree belongs to `nobody` while Dovecot runs and is given back on
    exit; call server.lend_tree() after writing into it with our store meanwhile.
    """
    if not available():
        raise RuntimeError(f"{DOVECOT} not found; apt-get install dovecot-imapd dovecot-pop3d")
    root_path = Path(root_path).absolute()
    work = Path(tempfile.mkdtemp(prefix="dovecot-"))
    # The auth process runs as the internal user and must be able to read the passwd file.
    work.chmod(0o755)
    for sub in ("run", "state"):
        (work / sub).mkdir()
    (work / "passwd").write_text("".join(f"{addr}:{{PLAIN}}{pw}\n" for addr, pw in users.items()))
    mail_user = _mail_user()
    config = work / "dovecot.conf"
    (root_path / "mail").mkdir(parents=True, exist_ok=True)
    opened = _open_ancestors(root_path / "mail") if os.getuid() == 0 else []
    server = DovecotServer("127.0.0.1", 0, None, work, root_path / "mail", mail_user)
    server.lend_tree()
    try:
        for attempt in range(START_ATTEMPTS):
            # A port found free can be taken by another test before Dovecot binds it:
            # then Dovecot exits, and it starts again on other ports.
            server.imap_port = free_port()
            server.pop3_port = free_port() if pop3 else None
            config.write_text(_config(root_path, work, server.imap_port, server.pop3_port, mail_user,
                                      extra_config))
            server.process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, start_new_session=True)
            try:
                server.wait_ready()
                break
            except RuntimeError as e:
                if "Address already in use" not in str(e) or attempt == START_ATTEMPTS - 1:
                    raise
        yield server
    finally:
        server.stop()
        if os.getuid() == 0:
            _chown_tree(root_path / "mail", 0, 0)
        for path, mode in opened:
            path.chmod(mode)
        shutil.rmtree(work, ignore_errors=True)


def dovecot_fixture(root_path: Path, users: dict[str, str], pop3: bool = False) -> Iterator[DovecotServer]:
    """For a pytest fixture: `yield from dovecot_fixture(tmp_path, {...})`."""
    with dovecot_server(root_path, users, pop3) as server:
        yield server
