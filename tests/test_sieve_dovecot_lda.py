"""Dovecot's own delivery agent with Pigeonhole (dovecot-lda, Debian dovecot-sieve) on a
root whose Sieve scripts `mailctl rule add` and `mailctl autoreply set` wrote: it files a
message into the same folder our server does, and its vacation answers as ours (its
sendmail here is a script that keeps what it is given)."""
from __future__ import annotations

import email
import os
import subprocess
import time

import pytest

from dovecot import available, dovecot_server
from helpers_server import make_root, running_server
from test_autoreply import ok
from test_sieve_delivery import subjects
from test_sieve_vacation import ACCOUNT, deliver, mail, replies

LDA = "/usr/lib/dovecot/dovecot-lda"
SIEVE_PLUGIN = """\
protocol lda {
  mail_plugins = $mail_plugins sieve
}
lda_mailbox_autocreate = yes
postmaster_address = postmaster@example.com
sendmail_path = {work}/sendmail
plugin {
  sieve = file:~/sieve;active=~/.dovecot.sieve
  sieve_global = {root}/sieve/global/
  sieve_before = {root}/sieve/before.d/
}
"""


def lda(server, root, data: bytes, sender: str) -> subprocess.CompletedProcess:
    return subprocess.run([LDA, "-c", str(server.workdir / "dovecot.conf"), "-d", ACCOUNT, "-f", sender],
                          input=data, capture_output=True, timeout=60)


@pytest.mark.skipif(not (available() and os.path.exists(LDA)), reason="dovecot-lda is not installed")
def test_dovecot_lda_files_and_answers_as_we_do(tmp_path):
    root = make_root(tmp_path, accounts={ACCOUNT: "bob-password-1"}, settings={"queue.offline": True})
    ok(root, "rule", "add", ACCOUNT, "--if", 'subject contains "invoice"', "--then", "move Finance/%YEAR%")
    ok(root, "rule", "add", "--global", "--if", 'header:X-Priority is "1"', "--then", "copy Urgent")
    ok(root, "autoreply", "set", ACCOUNT, "--subject", "Away: %SUBJECT%")
    year = time.strftime("%Y")
    invoice = mail("carol@far.example", "invoice 5", "X-Priority: 1\r\n")
    with running_server(root) as srv:
        deliver(srv.ports["smtp"], "carol@far.example", invoice)
    [(_, _, ours)] = replies(root)
    with dovecot_server(root.path, {ACCOUNT: "bob-password-1"}, extra_config=SIEVE_PLUGIN) as server:
        sendmail = server.workdir / "sendmail"
        sendmail.write_text(f"#!/bin/sh\ncat > {server.workdir}/sent.eml\n")
        sendmail.chmod(0o755)
        os.chmod(server.workdir, 0o777)
        done = lda(server, root, invoice.replace(b"<invoice.5@x.example>", b"<invoice.5b@x.example>"),
                   "dave@far.example")
        assert done.returncode == 0, done.stderr.decode() + server.log_text()
        theirs = email.message_from_bytes((server.workdir / "sent.eml").read_bytes())
    assert subjects(root, f"Finance/{year}") == ["invoice 5", "invoice 5"]      # ours, then Dovecot's
    assert subjects(root, "Urgent") == ["invoice 5", "invoice 5"]
    assert ours["Subject"] == theirs["Subject"] == "Away: invoice 5"
    assert theirs["Auto-Submitted"].startswith("auto-replied") and ours["Auto-Submitted"].startswith("auto-replied")
