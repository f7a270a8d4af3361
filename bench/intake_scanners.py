"""The scanners mode of bench/smtp_intake.py (`--scanners`): the same intake through a real
clamd (the tests' local signature database: no download) and a real spam scanner (rspamd's
normal worker with its DNS modules off, or SpamAssassin's spamd with -L), started as the
tests start them (tests/helpers_clamav.py, tests/helpers_spamscan.py), beside a server with
no scanner. Per mode: messages/s, the ratio to no scanner, the cost per message, and the
scanners' own share of it: their CPU per message (clamd, rspamd or spamd and their
workers) against mailctl's.

Modes: none, clamd, clamd+rspamd, clamd+spamd. The message is a clean 4 KiB (or --sizes)
text message from outside on port 25 (nothing whitelisted, so the spam scanner is asked;
the sender checks are off, as in the plain mode).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODES = ("none", "clamd", "clamd+rspamd", "clamd+spamd")
OFF = {"mailauth.spf": False, "mailauth.dkim": False, "mailauth.dmarc": False, "greylist.enabled": False,
       **{f"helo_checks.{c}": "off" for c in ("helo_syntax", "helo_forged", "reverse_dns", "sender_domain")}}


def settings_for(mode: str, clamd, rspamd, spamd) -> dict:
    values = dict(OFF)
    if "clamd" in mode:
        values |= {"antivirus.enabled": True, "antivirus.clamd": clamd.socket}
    if "rspamd" in mode or "spamd" in mode:
        values |= {"spam.enabled": True, "spam.whitelist_networks": [], "spam_scan.enabled": True,
                   "spam_scan.timeout_s": 60}
        values |= {"spam_scan.rspamd": rspamd.address} if "rspamd" in mode else {"spam_scan.spamd": spamd.address}
    return values


def message(size: int) -> bytes:
    body = ("From: Carol <carol@sender.test>\r\nTo: <alice@example.test>\r\nSubject: minutes of the meeting\r\n"
            "Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMessage-ID: <scan@sender.test>\r\n\r\n"
            "Hello Alice, here are the minutes of Tuesday's meeting, as promised.\r\n").encode()
    line = b"We agreed to move the review to Thursday and to ask Bob for the figures.\r\n"
    return body + line * max(0, (size - len(body)) // len(line))


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and every descendant (a scanner's workers)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except (OSError, IndexError, ValueError):
            pass
    return total


def scanners(base: Path):
    """clamd, rspamd and spamd started (the test helpers), as a context manager."""
    import contextlib
    sys.path.insert(0, str(REPO / "tests"))
    from helpers_clamav import Clamd
    from helpers_spamscan import Rspamd, Spamd

    @contextlib.contextmanager
    def running():
        with Clamd(base) as clamd, Rspamd(base) as rspamd, Spamd(base) as spamd:
            yield clamd, rspamd, spamd
    return running()
