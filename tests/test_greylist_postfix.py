"""Greylisting against a real retrying MTA: a private Postfix instance (its own
config_directory and queue_directory under a temp folder, its own ports) takes a message
and relays it through its queue to our port 25 (relayhost), is greylisted with 451 4.7.1,
retries from its deferred queue (backoff and queue_run_delay of a few seconds) and gets it
delivered. Needs Debian's postfix package and root (Postfix's master starts as root and
runs its daemons as the postfix user)."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers_mailauth import delivered, mail
from helpers_server import make_root, running_server

BOB = "bob@example.com"
DELAY_S = 3.0

pytestmark = pytest.mark.skipif(
    shutil.which("postfix") is None or os.geteuid() != 0,
    reason="needs Debian's postfix package and root")

MASTER_CF = """\
{port}      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostfix:
    """A Postfix instance of its own: `postfix -c <dir>/etc start|stop`."""

    def __init__(self, top: Path, relay_port: int):
        self.etc, self.spool, self.data = top / "etc", top / "spool", top / "data"
        self.log = top / "postfix.log"
        self.port = _free_port()
        for d in (self.etc, self.spool, self.data):
            d.mkdir(parents=True)
            os.chmod(d, 0o755)
        shutil.chown(self.data, "postfix")
        os.chmod(self.data, 0o700)
        (self.etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
config_directory = {self.etc}
queue_directory = {self.spool}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
myhostname = sender.postfix.test
mydomain = postfix.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
maillog_file = {self.log}
maillog_file_prefixes = {top}
relayhost = [127.0.0.1]:{relay_port}
default_transport = smtp
relay_transport = smtp
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_peername_lookup = no
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
delay_warning_time = 0
""")
        (self.etc / "master.cf").write_text(MASTER_CF.format(port=self.port))

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["postfix", "-c", str(self.etc), *args], capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        self.run("set-permissions")
        for step in ("check", "start"):
            done = self.run(step)
            if done.returncode != 0:
                pytest.skip(f"a private Postfix instance does not start here: postfix {step}: "
                            f"{(done.stderr or done.stdout).strip()[-300:]}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
                return
            time.sleep(0.1)
        raise AssertionError(f"Postfix's smtpd never listened: {self.log_text()[-2000:]}")

    def stop(self) -> None:
        self.run("stop")

    def log_text(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log.read_text(errors="replace")
        return ""


def test_postfix_is_greylisted_retries_and_delivers(tmp_path, open_tmp_path):
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings={
        "queue.offline": True, "greylist.enabled": True, "greylist.delay_minutes": DELAY_S / 60,
        "greylist.whitelist_networks": [], "greylist.spf_bypass": False})
    with running_server(root) as srv:
        postfix = PrivatePostfix(open_tmp_path / "postfix", srv.ports["smtp"])
        try:
            postfix.start()
            with smtplib.SMTP("127.0.0.1", postfix.port, timeout=20) as s:
                s.sendmail("carol@sender.postfix.test", [BOB], mail("carol@sender.postfix.test", "via postfix"))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not delivered(root):
                time.sleep(0.5)
            log = postfix.log_text()
            [m] = delivered(root)
            assert m["Subject"] == "via postfix"
            assert "sender.postfix.test" in m["Received"]         # relayed by Postfix's smtp client
            # Postfix was told 451 at least once and delivered on a retry from its queue
            assert re.search(r"status=deferred .*451 4\.7\.1 Please Try Again Later", log), log[-3000:]
            assert re.search(r"to=<bob@example\.com>.*status=sent", log), log[-3000:]
            assert srv.runtime.counters["greylist_deferred"] >= 1
            assert srv.runtime.counters["greylist_passed"] == 1
        finally:
            postfix.stop()
