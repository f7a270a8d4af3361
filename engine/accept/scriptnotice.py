"""Telling a mailbox's owner, once, that a Sieve script it runs fails (RFC 5228 leaves the
message to the implicit keep: it goes to INBOX, and without a word the owner would never
learn why their filters stopped working). The notice is a message put straight into their
INBOX; whether it was sent is a file per (mailbox, error) under state/sieve-notices/, made
with O_EXCL, so two serving processes meeting the same error send one notice, and a
restart none again. A changed error (a new line number, say) is told anew.
"""
from __future__ import annotations

import hashlib
import logging
import os
from email.utils import formatdate, make_msgid

from .. import nofollow

log = logging.getLogger("mailctl.sieve")
DIRNAME = "sieve-notices"


def notify_once(root, box, address: str, error: str) -> bool:
    """Deliver the notice of error into the mailbox's INBOX unless it was; True when sent."""
    key = hashlib.sha256(f"{address.lower()}\0{error}".encode("utf-8", "surrogateescape")).hexdigest()
    folder = root.state_dir / DIRNAME
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        nofollow.check_dirs(root.path, folder)
        os.close(nofollow.open_file(folder / key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, quiet=True))
    except FileExistsError:
        return False
    except OSError as e:                  # a full disk: the message still goes to INBOX
        log.warning("sieve: %s: the owner is not told of the script error: %s", address, e.strerror or e)
        return False
    box.deliver(notice(address, error))
    log.info("sieve: %s: told the owner that a script fails: %s", address, error)
    return True


def notice(address: str, error: str) -> bytes:
    domain = address.rpartition("@")[2]
    shown = error.replace("\r", " ").replace("\n", " ")[:300]
    subject = "Your mail filter (Sieve) has an error"
    body = (f"One of the Sieve scripts run for your mail could not be run:\n\n    {shown}\n\n"
            "Until it is fixed, your mail goes to your INBOX as if there were no filter: nothing is lost.\n"
            "Fix the script in your mail program's filter settings (ManageSieve), or ask your administrator.\n"
            "You are told once for each error.\n")
    head = (f"From: Mail filters <postmaster@{domain}>\nTo: <{address}>\nSubject: {subject}\n"
            f"Date: {formatdate(localtime=True)}\nMessage-ID: {make_msgid(domain=domain)}\n"
            "Auto-Submitted: auto-generated\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: 8bit\n\n")
    return (head + body).encode("utf-8", "replace")
