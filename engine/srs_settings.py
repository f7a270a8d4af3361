"""`[srs]` of mailctl.toml: the Sender Rewriting Scheme for mail forwarded to other
domains (engine/srs.py the addresses, engine/srs_forward.py where they are used).

On by default, as postsrsd users expect: without it, every copy an alias or a forward
sends to a large provider carries a sender whose domain's SPF does not name us, and is
refused or filed as spam there; with it, only those copies change, and only while a
message is forwarded (mail our users send, local deliveries and bounces keep their sender).
"""
from __future__ import annotations

from .settingkeys import Key, domain, in_range, optional

KEYS = {
    "enabled": Key(True, bool, "rewrite the envelope sender of mail forwarded or aliased to other domains "
                   "as SRS0=HASH=TT=domain=local@our-domain (as postsrsd), so the receiver's SPF check passes; "
                   "bounces to such addresses go back to the original sender. Keep it on for max_age_days "
                   "after turning it off, or late bounces are refused"),
    "domain": Key("", str, "domain of the rewritten senders: '' = the domain that forwarded the message (the "
                  "recipient's, whose SPF record and MX already name this server), or one name for all (a "
                  "local domain, or this server's host name with an A record and an SPF record)",
                  optional(domain)),
    "max_age_days": Key(21, int, "a bounce to an SRS address older than this is refused (550 5.1.1)",
                        in_range(1, 1000)),
    "hash_length": Key(4, int, "characters of the HMAC-SHA1 hash in an SRS address (libsrs2's default is 4)",
                       in_range(4, 28)),
}
