"""mailctl.toml's [antivirus] section (engine/settings.py SCHEMA holds it by this name)."""
from __future__ import annotations

from ..settingkeys import Key, in_range, one_of
from .clamd import parse_address
from .command import PLACEHOLDER


def clamd_address(v):
    if v == "":
        return None
    try:
        parse_address(v)
    except ValueError as e:
        return str(e) + " (like /run/clamav/clamd.ctl or 127.0.0.1:3310)"
    return None


def command_line(v):
    if not v:
        return None
    if not all(isinstance(a, str) for a in v):
        return "must be a list of strings: the program and its arguments"
    if not v[0].startswith("/"):
        return "the program must be given by its full path (it runs without a shell)"
    if not any(PLACEHOLDER in a for a in v[1:]):
        return f"one argument must hold {PLACEHOLDER} (the file holding the message)"
    return None


def exit_codes(v):
    if not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 255 for c in v):
        return "must be a list of exit codes from 1 to 255"
    return None


KEYS = {
    "enabled": Key(False, bool, "scan every message for viruses, whichever way it came in (SMTP, submission, "
                   "pickup/, sendmail, mailctl send), with clamd and/or command; off per domain with "
                   "antivirus = false in its domain file (mail to other domains is always scanned)"),
    "clamd": Key("/run/clamav/clamd.ctl", str, "clamd's socket: a unix socket path or host:port (ClamAV's TCP "
                 "port is 3310); '' = no clamd. Its StreamMaxLength must be at least max_size_mb",
                 clamd_address),
    "command": Key([], list, "an external scanner: the program (full path) and its arguments, %FILE% standing "
                   "for the message file (mode 0600, under the root's tmp/; no shell), e.g. "
                   "[\"/usr/bin/clamdscan\", \"--no-summary\", \"--fdpass\", \"%FILE%\"]; [] = none",
                   command_line),
    "command_virus_codes": Key([1], list, "exit codes of command that mean a virus was found (0 is clean; any "
                               "other code is a scanner failure)", exit_codes),
    "action": Key("reject", str, "what an infected message gets: 'reject' (554 5.7.1 naming the virus; nothing "
                  "is kept), 'strip' (the infected attachments are replaced by a note, the rest delivered; "
                  "refused when that is not possible) or 'discard' (accepted, dropped, the administrator told; SMTP "
                  "only: mail injected on this machine is refused, its sender is right there)",
                  one_of("reject", "strip", "discard")),
    "on_failure": Key("defer", str, "when the scanner is down, times out or answers garbage: 'defer' (451 4.7.1, "
                      "the sender tries again) or 'accept' (with an X-Virus-Scanned header saying it was not "
                      "scanned)", one_of("defer", "accept")),
    "max_size_mb": Key(25, (int, float), "larger messages are not scanned (viruses come small)", in_range(0.01, 1024)),
    "oversize": Key("accept", str, "what a message over max_size_mb gets: 'accept' (with a header saying it was "
                    "not scanned) or 'reject' (552 5.3.4)", one_of("accept", "reject")),
    "timeout_s": Key(30, (int, float), "time allowed for scanning one message (each scanner); past it the "
                     "scanner has failed (on_failure)", in_range(0.1, 600)),
    "header": Key(True, bool, "add X-Virus-Scanned to every message found clean (one saying a message was not "
                  "scanned, or had attachments removed, is always added)"),
}
