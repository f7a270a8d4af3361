"""The [spam] and [dnsbl] sections of mailctl.toml (engine/settings.py lists them in its
SCHEMA): the spam score's thresholds and whitelist (engine/accept/spamscore.py), and the
DNS block lists (engine/accept/dnslists.py, engine/dnsbl.py).

A block list is an inline table in one of dnsbl's three lists:

    client_lists = [{ zone = "zen.spamhaus.org", answers = ["127.0.0.2", "127.0.0.*"], score = 5.0,
                      reject = "" }]

zone (required), answers (expected answers, engine/dnsbl.py; default ["127.0.0.*"]),
score (points a listing adds; default 0), reject (a text: a listing refuses the mail with
550 5.7.1 and that text instead of scoring; {ip}, {domain} and {zone} in it are filled in).
domain_lists entries may also say check = ["sender", "helo"] (which domains are asked).
"""
from __future__ import annotations

import fnmatch

from .dnsbl import pattern_problem
from .settingkeys import Key, control_problem, domain, in_range, ip_patterns, non_empty, shown

DEFAULT_ANSWERS = ["127.0.0.*"]
LIST_FIELDS = {"zone", "answers", "score", "reject", "check"}
DOMAIN_CHECKS = ("sender", "helo")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def sender_patterns(v):
    for item in v:
        text = str(item)
        if "@" not in text or text.count("@") > 1 or " " in text or not text.strip("*?@"):
            return f"{shown(text)} is not a sender pattern (like *@example.com, news@*, *@*.example.org)"
    return None


def sender_listed(sender: str, patterns) -> bool:
    """Does the envelope sender match one of the address wildcards (case-insensitive)?"""
    sender = sender.lower()
    return bool(sender) and any(fnmatch.fnmatchcase(sender, str(p).lower()) for p in patterns)


def block_lists(kind: str):
    """The check of one of dnsbl's lists (kind: client, domain or uri)."""
    def check(v):
        for entry in v:
            if not isinstance(entry, dict):
                return 'each list is a table like { zone = "bl.example", score = 3.0 }'
            zone = entry.get("zone")
            allowed = LIST_FIELDS if kind == "domain" else LIST_FIELDS - {"check"}
            unknown = set(entry) - allowed
            if unknown:
                return f"unknown field {sorted(unknown)[0]!r} (known: zone, answers, score, reject" + \
                       (", check)" if kind == "domain" else ")")
            if not isinstance(zone, str) or domain(zone):
                return f"zone {shown(str(zone))}: must be the list's DNS zone, like bl.example.org"
            answers = entry.get("answers", DEFAULT_ANSWERS)
            if not isinstance(answers, list) or not answers:
                return f"{zone}: answers must be a list of expected answers (like [\"127.0.0.2\"])"
            problem = next((p for p in map(pattern_problem, answers) if p), None)
            if problem:
                return f"{zone}: {problem}"
            if not _number(entry.get("score", 0)) or not -100 <= entry.get("score", 0) <= 100:
                return f"{zone}: score must be a number from -100 to 100"
            reject = entry.get("reject", "")
            if not isinstance(reject, str) or len(reject) > 200 or control_problem(reject):
                return f"{zone}: reject must be a text of one line (\"\" = score only)"
            checks = entry.get("check", list(DOMAIN_CHECKS))
            if not isinstance(checks, list) or not checks or not set(checks) <= set(DOMAIN_CHECKS):
                return f"{zone}: check must list \"sender\" and/or \"helo\""
        return None
    return check


SPAM_KEYS = {
    "enabled": Key(True, bool, "weigh the spam score of mail from other servers on port 25: the points every "
                   "check adds (DNS block lists, HELO checks ...). Never for AUTH, submission, trusted networks "
                   "or mail injected on this machine; per domain: spam_scoring = false in its file"),
    "mark_score": Key(5.0, (int, float), "at or over this score a message gets X-Spam-Flag/-Score/-Status "
                      "headers naming the checks and goes into the recipient's junk_folder (per domain: "
                      "spam_mark_score)", in_range(0.1, 1000)),
    "reject_score": Key(0, (int, float), "at or over this score the message is refused with 550 5.7.1 at the end "
                        "of DATA; 0 = never (the default: nothing is refused until you choose; 10 is common). "
                        "Per domain: spam_reject_score", in_range(0, 1000)),
    "subject_prefix": Key("", str, "put before the Subject of a marked message, like \"[SPAM] \" ('' = none)"),
    "junk_folder": Key("Junk", str, "folder for marked mail (INBOX when a mailbox has no such folder); per domain: "
                       "junk_folder in its file", non_empty),
    "whitelist_networks": Key(["127.0.0.0/8", "::1/128"], list, "clients whose mail is never scored nor "
                              "checked against block lists: addresses, networks or wildcards (192.168.*)",
                              ip_patterns),
    "whitelist_senders": Key([], list, "envelope senders never scored (wildcards: *@example.com, news@*); "
                             "easily forged, prefer whitelist_networks", sender_patterns),
}

DNSBL_KEYS = {
    "client_lists": Key([], list, "DNSBLs asked about the client's IP at RCPT, e.g. "
                        "[{ zone = \"zen.spamhaus.org\", answers = [\"127.0.0.*\"], score = 5.0, reject = \"\" }]; "
                        "answers: addresses, wildcards (127.0.0.*), networks or bit masks (&8); reject = \"text\" "
                        "refuses with 550 5.7.1 text instead of scoring. None by default",
                        block_lists("client")),
    "domain_lists": Key([], list, "RHSBLs asked about the sender's and HELO domains at RCPT, e.g. "
                        "[{ zone = \"dbl.example\", answers = [\"127.0.1.*\"], score = 3.0, check = [\"sender\", "
                        "\"helo\"] }]", block_lists("domain")),
    "uri_lists": Key([], list, "URI lists (SURBL, URIBL) asked about the domains of URLs in the body after "
                     "DATA, e.g. [{ zone = \"multi.surbl.org\", answers = [\"&8\", \"&16\", \"&64\"], "
                     "score = 4.0 }]", block_lists("uri")),
    "dns_timeout_s": Key(2, (int, float), "time allowed for the lookups (all lists are asked at once; a "
                         "timeout scores nothing and is logged). Servers: queue.nameservers", in_range(0.1, 30)),
    "cache_s": Key(300, (int, float), "answers are kept this long in each serving process (0 = not kept)",
                   in_range(0, 86400)),
    "max_urls": Key(20, int, "distinct URL domains of one message asked of the URI lists", in_range(1, 200)),
    "max_body_kb": Key(256, int, "KB of a message read for its URLs", in_range(1, 10240)),
}


def junk_folder(settings, directory, address: str) -> str:
    """The Junk folder of a mailbox: its domain's junk_folder, else spam.junk_folder."""
    domain = directory.domain(address.rpartition("@")[2]) if directory is not None else None
    return (domain.junk_folder if domain is not None else "") or settings.spam.junk_folder
