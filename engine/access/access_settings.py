"""The [access] section of mailctl.toml (engine/settings.py's SCHEMA takes it from here):
static access policy. What changes at run time (bans, allow/deny entries with an expiry,
block-list entries added by command) is in state/, see entries.py and engine/bans.py."""
from __future__ import annotations

from ..errors import InvalidInput
from ..settingkeys import Key, networks
from .patterns import parse_pattern
from .ranges import ranges_problem


def patterns(v):
    for item in v:
        try:
            parse_pattern(item)
        except InvalidInput as e:
            return str(e)
    return None


KEYS = {
    "ban_exempt": Key([], list, "clients never banned automatically for failed logins or pregreets "
                      "(a webmail host, a NAT gateway shared by many users): addresses or networks. "
                      "'mailctl ban add' still bans them", networks),
    "block_senders": Key([], list, "senders refused at RCPT TO with 550 5.7.1 (unless authenticated): "
                         "addresses, domains (example.com, *.example.com) or wildcard patterns (*@spam.example, "
                         "sales@*, *offer*); 'mailctl access add sender' adds more at run time", patterns),
    "block_recipients": Key([], list, "recipients refused at RCPT TO with 550 5.7.1, for every client: the same "
                            "patterns; 'mailctl access add recipient' adds more at run time", patterns),
    "incoming_relays": Key([], list, "our backup MX hosts (addresses or networks): for their mail, the checks after "
                           "DATA (SPF, DMARC, the spam and virus switches of a range) use the original client's address "
                           "from the Received header the relay added; logs and our Received header keep the relay's",
                           networks),
    "ranges": Key({}, dict, "hMailServer's IP ranges, one table each: [access.ranges.lan] networks = "
                  "[\"192.168.0.0/16\"], priority = 10 (0-1000, highest wins), spam_checks = true, "
                  "virus_checks = true, and for local_to_local, local_to_external, external_to_local, "
                  "external_to_external: \"allow\", \"auth\" (AUTH or relay.trusted_networks) or \"deny\" "
                  "(defaults: to local allow, to external auth). A client in no range: the relay settings alone "
                  "decide", ranges_problem),
}

# Shown in sample-config.toml after the keys of [access].
EXAMPLE = [
    "# IP ranges, for example (hMailServer's model; a client in no range: the relay settings decide):",
    "#   [access.ranges.lan]",
    "#   networks = [\"192.168.0.0/16\", \"fd00::/8\"]",
    "#   priority = 20                        # 0-1000; the highest range holding a client decides",
    "#   spam_checks = false                  # engine.access.ranges.checks_for tells the spam stages",
    "#   virus_checks = true",
    "#   local_to_external = \"allow\"         # relay without AUTH from the LAN (port 25 too)",
    "#   [access.ranges.internet]",
    "#   networks = [\"0.0.0.0/0\", \"::/0\"]",
    "#   external_to_external = \"deny\"       # never relay from outside, even with AUTH",
]
