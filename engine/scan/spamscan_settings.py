"""mailctl.toml's [spam_scan] section: rspamd and/or SpamAssassin's spamd asked about mail
from other servers (engine/accept/spamscan.py; engine/settings.py SCHEMA holds it by this name)."""
from __future__ import annotations

import re

from ..settingkeys import Key, in_range, one_of
from .clamd import parse_address


def scanner_address(v):
    if v == "":
        return None
    try:
        parse_address(v)
    except ValueError as e:
        return str(e) + " (like 127.0.0.1:11333 or /run/rspamd/normal.sock)"
    return None


def user_name(v):
    if v and not re.fullmatch(r"[\x21-\x7e]{1,320}", v):
        return "must be a user name without spaces or control characters"
    return None


KEYS = {
    "enabled": Key(False, bool, "ask the spam scanners below about mail from other servers on port 25 (needs "
                   "spam.enabled; never "
                   "AUTH, submission, trusted networks, spam.whitelist_* or mail injected on this machine); off "
                   "per domain with spam_scan = false in its file, per account with spam_filter = false"),
    "rspamd": Key("", str, "rspamd's normal worker: host:port (its port is 11333) or a unix socket path; '' = "
                  "none", scanner_address),
    "spamd": Key("", str, "SpamAssassin's spamd: host:port (its port is 783) or a unix socket path; '' = none",
                 scanner_address),
    "spamd_user": Key("", str, "the User spamd is told (whose preferences it uses); '' = none", user_name),
    "mode": Key("score", str, "'score': a scanner's score adds to the spam score of the other checks and "
                "[spam]'s thresholds decide; 'own': each scanner's own verdict decides (rspamd: reject -> 554 "
                "5.7.1, greylist or soft reject -> 451 4.7.1, add header or rewrite subject -> X-Spam headers "
                "and Junk; spamd: spam -> X-Spam headers and Junk, at reject_score or over -> 554 5.7.1)",
                one_of("score", "own")),
    "reject_score": Key(0, (int, float), "in mode 'own', spamd's score at or over which the message is refused "
                        "(554 5.7.1 Tagged As SPAM By SpamAssassin); 0 = never", in_range(0, 10000)),
    "on_failure": Key("accept", str, "when a scanner is down, times out or answers garbage: 'accept' (with an "
                      "X-Spam-Scanned header saying it was not scanned) or 'defer' (451 4.7.1, the sender tries "
                      "again); never a 5xx", one_of("accept", "defer")),
    "max_size_kb": Key(1024, int, "larger messages are not sent to the scanners (an X-Spam-Scanned header says "
                       "so); spam comes small", in_range(1, 102400)),
    "timeout_s": Key(15, (int, float), "time allowed to each scanner for one message; past it the scanner has "
                     "failed (on_failure)", in_range(0.1, 300)),
}
