"""mailctl.toml's [spam_learn] section: what users move into or out of their Junk folder over
IMAP is told to rspamd's controller and/or spamd (engine/learning.py; engine/settings.py
SCHEMA holds it by this name)."""
from __future__ import annotations

from ..settingkeys import Key, in_range
from .spamscan_settings import scanner_address, user_name

KEYS = {
    "enabled": Key(True, bool, "learn from users: a message moved or copied into the Junk folder over IMAP (or "
                   "given the $Junk keyword, or appended there) is told to the learners below as spam; one moved out "
                   "of Junk to any folder but Trash (or given $NotJunk) as ham. In the background: it never slows "
                   "the IMAP command. Nothing is learned until a learner is named"),
    "rspamd_controller": Key("", str, "rspamd's controller worker, which learns: host:port (its port is 11334; "
                             "loopback needs no password, its secure_ip) or a unix socket path; '' = none",
                             scanner_address),
    "spamd": Key("", str, "SpamAssassin's spamd, started with --allow-tell: host:port (its port is 783) or a unix "
                 "socket path; '' = none", scanner_address),
    "spamd_user": Key("", str, "the User spamd is told (whose Bayes database learns); '' = none", user_name),
    "max_size_kb": Key(1024, int, "larger messages are not learned (spam comes small)", in_range(1, 102400)),
    "timeout_s": Key(30, (int, float), "time allowed to each learner for one message", in_range(0.1, 300)),
    "retry_s": Key(60, (int, float), "a learner that failed is tried again after this long", in_range(1, 86400)),
    "keep_hours": Key(24, (int, float), "a message no learner could take within this long is dropped (logged)",
                      in_range(0.1, 720)),
}
