"""The [helo_checks] section of mailctl.toml: the HELO and sender checks of port 25
(engine/accept/helochecks.py), each 'off', 'score' (points toward the spam score) or
'reject' (550 5.7.1 at RCPT TO)."""
from __future__ import annotations

from .settingkeys import Key, in_range, networks, one_of

MODES = ("off", "score", "reject")
_mode = one_of(*MODES)
_points = in_range(-100, 100)

KEYS = {
    "helo_syntax": Key("score", str, "a HELO/EHLO name that is neither a fully qualified domain name nor an "
                       "address literal of the client ([192.0.2.1]): bare IPs, one label, underscores "
                       "(RFC 5321 §4.1.4): 'off', 'score' or 'reject'", _mode),
    "helo_syntax_score": Key(1.0, (int, float), "points a bad HELO name adds", _points),
    "helo_forged": Key("score", str, "a client outside names us in HELO: our host name, one of our domains or "
                       "our IP address: 'off', 'score' or 'reject' (RFC 5321 §4.1.4 says a mismatching "
                       "HELO alone must not refuse mail; 'reject' is common for this one)", _mode),
    "helo_forged_score": Key(3.0, (int, float), "points a HELO naming us adds", _points),
    "reverse_dns": Key("score", str, "forward-confirmed reverse DNS of the client: a PTR name whose A/AAAA "
                       "records hold the client's address. No PTR or no match: 'off', 'score' or 'reject'",
                       _mode),
    "reverse_dns_score": Key(1.0, (int, float), "points a client without confirmed reverse DNS adds", _points),
    "sender_domain": Key("reject", str, "a MAIL FROM domain with neither MX nor A/AAAA records, or a null MX "
                         "(RFC 7505): it cannot receive replies or bounces: 'off', 'score' or 'reject'", _mode),
    "sender_domain_score": Key(3.0, (int, float), "points a sender domain that receives no mail adds", _points),
    "ignore_networks": Key(["127.0.0.0/8", "::1/128"], list, "clients these checks skip (trusted networks "
                           "and authenticated users always are); a DNS failure never refuses nor scores",
                           networks),
}
