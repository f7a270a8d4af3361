"""mailctl.toml: the schema with every key's default, loading and validation.

Every problem is reported as 'file:line: key: message'. `sample-config.toml` documents
the same keys; a test keeps the two in step.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from . import sendlimits_settings, srs_settings, tomlfile
from . import helo_settings, spam_settings
from .access import access_settings
from .errors import ConfigError
from .scan import attachment_settings
from .scan import settings as antivirus_settings
from .scan import learn_settings, spamscan_settings
from .settingkeys import (
    Key, address, control_problem, domain, domain_patterns, domains, durations,
    host_or_ip_problem, hostname, in_range, ip_address, ip_addresses, ip_patterns,
    listen_port, nameservers, networks, non_empty, one_of, optional, port_number, senders)


LISTENERS = {
    # name: (port, tls mode, what it is)
    "smtp": (25, "starttls", "inbound mail from other servers (MX)"),
    "submission": (587, "starttls", "mail submission by users, AUTH after STARTTLS"),
    "submissions": (465, "implicit", "mail submission over implicit TLS"),
    "imap": (143, "starttls", "IMAP with STARTTLS"),
    "imaps": (993, "implicit", "IMAP over implicit TLS"),
    "pop3": (110, "starttls", "POP3 with STLS"),
    "pop3s": (995, "implicit", "POP3 over implicit TLS"),
    "managesieve": (4190, "starttls", "ManageSieve (users' Sieve scripts) with STARTTLS"),
}
HIGH_PORTS = {"smtp": 2525, "submission": 2587, "submissions": 2465,
              "imap": 2143, "imaps": 2993, "pop3": 2110, "pop3s": 2995,
              "managesieve": 24190}


def _listener_section(name: str) -> dict[str, Key]:
    port, tls, what = LISTENERS[name]
    return {
        "enabled": Key(True, bool, f"serve {what}"),
        "bind": Key(["0.0.0.0", "::"], list, "addresses to listen on (IPv4 and IPv6)", ip_addresses),
        "port": Key(port, int, "TCP port", listen_port),
        "tls": Key(tls, str, "'starttls' (offered on the plain port), 'implicit' (TLS from the first byte) or 'none'",
                   one_of("starttls", "implicit", "none")),
    }


SCHEMA: dict[str, dict[str, Key]] = {
    "server": {
        "hostname": Key("localhost", str, "this server's public host name: banner, HELO, Received headers",
                         hostname),
        "default_domain": Key("", str, "domain for logins given without @domain ('' = full address required)",
                               optional(domain)),
        "postmaster": Key("", str, "the administrator: failure notices, and mail to postmaster@ a local domain "
                          "without an account or alias of that name, go here ('' = postmaster@ the first domain)",
                          optional(address)),
        "log_level": Key("info", str, "debug, info, warning or error", one_of("debug", "info", "warning", "error")),
        "processes": Key(0, int, "serving processes sharing the listeners, for more CPU cores "
                                 "(limits count across them); 0 = one per CPU core, at most 15",
                         in_range(0, 15)),
        "user": Key("mailctl", str, "the system user the serving processes run as when the server is started "
                                    "as root; it owns the mail root ('mailctl init' run as root creates it). "
                                    "Started as another user, every process runs as that user"),
    },
    **{f"listeners.{name}": _listener_section(name) for name in LISTENERS},
    "tls": {
        "cert": Key("tls/cert.pem", str, "certificate chain (PEM), relative to the root or absolute", non_empty),
        "key": Key("tls/key.pem", str, "private key (PEM, no passphrase), relative to the root or absolute", non_empty),
        "min_version": Key("TLSv1.2", str, "oldest TLS version accepted", one_of("TLSv1.2", "TLSv1.3")),
    },
    "limits": {
        "max_message_size_mb": Key(25, (int, float), "largest message accepted (SMTP SIZE); 0 = the ceiling of 1 GiB", in_range(0)),
        "min_free_space_mb": Key(0, (int, float), "MB kept free on the mail root's file system: below it (SIZE= counted) "
                                 "MAIL FROM gets 452 4.3.1, before any data is sent. Never less than 1.5 x "
                                 "max_message_size_mb when that is set (Postfix's queue_minfree rule): the largest message still "
                                 "fits, with room for the queue and mailbox writes after it", in_range(0)),
        "max_recipients": Key(100, int, "recipients per message", in_range(1)),
        "max_connections": Key(200, int, "SMTP connections at once; 0 = no limit", in_range(0)),
        "max_connections_per_ip": Key(20, int, "SMTP connections at once from one IP; 0 = no limit", in_range(0)),
        "messages_per_ip_per_minute": Key(0, int, "messages accepted from one IP per minute; 0 = no limit", in_range(0)),
        "max_invalid_commands": Key(10, int, "invalid SMTP commands before disconnect", in_range(1)),
        "max_command_line": Key(512, int, "longest SMTP command line in bytes (RFC 5321: 512)", in_range(512, 65536)),
        "command_timeout_s": Key(300, int, "idle time allowed between commands (greeting included), "
                                 "then 421 4.4.2 (RFC 5321 4.5.3.2: 5 minutes)", in_range(1)),
        "stress_timeout_s": Key(10, int, "the idle time allowed instead when the server is near its "
                                "connection limits (over 80 % of max_connections or of "
                                "max_connections_per_ip), as Postfix under stress", in_range(1)),
        "pregreet_wait_s": Key(1, (int, float), "port 25 waits this long before its greeting; a client "
                               "that talks first gets 554 5.5.1, is disconnected and counts toward a "
                               "ban (as Postfix postscreen, whose wait is 6 s); 0 = no wait", in_range(0, 30)),
        "data_timeout_s": Key(600, int, "total time allowed for one DATA transfer", in_range(1)),
        "max_forward_targets": Key(20, int, "targets of one alias or forward", in_range(1, 10000)),
        "max_aliases_per_address": Key(50, int, "aliases that may point at one address", in_range(1, 10000)),
        "max_forward_depth": Key(10, int, "alias/forward hops before 'Too Many Recursive Forwards'", in_range(1, 100)),
    },
    "relay": {
        "trusted_networks": Key([], list, "clients that may submit on 587 without AUTH (empty = none)", networks),
        "open_relay_for_trusted": Key(False, bool, "let trusted networks relay on port 25 too (dangerous; logged loudly)"),
        "sender_must_be_local": Key(False, bool, "submission senders must be local accounts"),
        "allowed_senders": Key({}, dict, "extra sender addresses per login: { \"alice@example.com\" = [\"sales@example.com\"] }",
                               senders),
        "over_quota_permanent": Key(False, bool, "answer a full mailbox with 552 5.2.2 instead of 452 4.2.2"),
        "bare_newline": Key("normalize_trusted", str,
                            "a bare LF in DATA (a line end without CR: scripts, curl --upload-file): "
                            "'normalize_trusted' = made CR LF for authenticated clients and trusted_networks, "
                            "refused (554 5.6.0) from the others; 'normalize' = made CR LF for all (Postfix "
                            "3.9's default); 'reject' = refused from all. Only CR LF . CR LF ever ends the data, "
                            "and a bare CR or a lone '.' line next to a bare LF (SMTP smuggling) is always refused",
                            one_of("normalize_trusted", "normalize", "reject")),
        "recipient_delimiter": Key("", str, "plus addressing: 'user+tag' delivers to 'user' when set to '+'",
                                   lambda v: None if len(v) <= 1 else "must be one character or empty"),
    },
    "auth": {
        "failure_delay_s": Key(1.0, (int, float), "delay before answering a failed login", in_range(0, 60)),
        "ban_after_failures": Key(5, int, "failed logins (and port 25 pregreets) from one IP before a ban; 0 = never ban", in_range(0)),
        "ban_window_minutes": Key(10, (int, float), "window in which failures are counted", in_range(0)),
        "ban_minutes": Key(60, (int, float), "how long a ban lasts", in_range(0)),
        "allow_plaintext": Key(False, bool, "allow AUTH/LOGIN before TLS (not recommended)"),
        "max_logins_in_flight_per_ip": Key(4, int, "logins from one IP checked at once; the others wait "
                                           "their turn (a parallel guessing attack meets the ban)",
                                           in_range(1, 1000)),
        "cache_seconds": Key(300, (int, float), "remember a verified login this long (saves the slow "
                             "password hash check on reconnects); 0 = off", in_range(0, 86400)),
    },
    "mailbox": {
        "default_folders": Key(["Sent", "Drafts", "Trash", "Junk", "Archive"], list,
                               "folders created with every account"),
        "default_quota_mb": Key(0, int, "quota of new accounts; 0 = unlimited", in_range(0)),
        "append_limit_mb": Key(100, (int, float), "largest IMAP APPEND; 0 forbids APPEND", in_range(0)),
        "autoexpunge_days": Key(0, int, "expunge \\Deleted messages older than this; 0 = never", in_range(0)),
        "tmp_max_age_hours": Key(36, (int, float), "files a crash left in a folder's tmp/ are deleted at a sync "
                                 "once this old (Dovecot: 36); 0 = never", in_range(0)),
        "max_sessions_per_user": Key(20, int, "IMAP/POP3 sessions per user; 0 = no limit", in_range(0)),
        "max_sessions": Key(500, int, "IMAP/POP3 sessions at once; 0 = no limit", in_range(0)),
        "max_connections_per_ip": Key(20, int, "IMAP/POP3 connections not yet logged in from one IP; "
                                      "0 = no limit", in_range(0)),
        "max_userip_connections": Key(10, int, "IMAP/POP3 connections of one user from one IP (Dovecot's "
                                      "mail_max_userip_connections); 0 = no limit", in_range(0)),
        "idle_timeout_s": Key(1800, int, "authenticated IMAP idle timeout, between commands and in IDLE "
                              "(RFC 3501 5.4: at least 30 minutes; clients renew IDLE every 29)", in_range(60)),
        "command_time_limit_s": Key(300, (int, float), "longest one IMAP command may run, its disk work "
                                    "included, before it is stopped with NO; IDLE is not bound by it "
                                    "(it lasts up to idle_timeout_s)", in_range(1)),
        "login_timeout_s": Key(60, int, "time allowed before login", in_range(5)),
        "stress_login_timeout_s": Key(10, int, "time allowed before login when near the connection limits "
                                      "(over 80 % of max_sessions or of max_connections_per_ip)", in_range(1)),
        "quota_grace_percent": Key(10, (int, float), "mail that fits within this much over a mailbox's quota "
                                   "is still delivered (Dovecot's quota_grace), so port 25 can decide "
                                   "during the dialogue and never bounce later", in_range(0, 100)),
    },
    "queue": {
        "retry_minutes": Key([0, 7.5, 15, 30, 60, 120, 240, 480, 960], list,
                             "retry schedule in minutes; the last interval repeats", durations),
        "max_age_days": Key(5, (int, float), "give up and bounce after this long", in_range(0)),
        "delay_notice_hours": Key(4, (int, float), "send one 'delayed' notice after this long; 0 = never", in_range(0)),
        "concurrency": Key(10, int, "deliveries at once", in_range(1, 1000)),
        "max_recipients_per_transaction": Key(50, int, "recipients of one destination per SMTP transaction", in_range(1)),
        "messages_per_minute": Key(0, int, "outbound cap; 0 = no limit", in_range(0)),
        "offline": Key(False, bool, "queue everything, send nothing until switched off"),
        "helo_name": Key("", str, "HELO name for outbound mail ('' = server.hostname)", optional(hostname)),
        "source_address": Key("", str, "source IP for outbound connections ('' = system default)", optional(ip_address)),
        "require_tls_domains": Key([], list, "destinations that need verified TLS", domains),
        "smtp_port": Key(25, int, "port of destination MX hosts (change only for tests)", port_number),
        "nameservers": Key([], list, "DNS servers for MX lookups, 'ip' or 'ip:port' ([] = system resolver)",
                           lambda v: nameservers(v)),
        "dns_timeout_s": Key(10, (int, float), "DNS lookup timeout; a timeout defers", in_range(0.1, 120)),
        "connect_timeout_s": Key(30, (int, float), "TCP connect timeout per destination address", in_range(0.1, 600)),
        "command_timeout_s": Key(300, (int, float), "time allowed for each SMTP reply", in_range(1, 3600)),
        "tls_ca_file": Key("", str, "CA bundle for verified TLS (require_tls_domains, smarthost) ('' = system CAs)"),
    },
    "smarthost": {
        "host": Key("", str, "send all outbound mail through this relay ('' = direct MX delivery)",
                    optional(host_or_ip_problem)),
        "port": Key(587, int, "relay port", port_number),
        "tls": Key("starttls", str, "'none', 'starttls' or 'implicit'", one_of("none", "starttls", "implicit")),
        "username": Key("", str, "AUTH user name ('' = no AUTH)"),
        "password_file": Key("", str, "file holding the AUTH password"),
    },
    "routes": {},   # per-domain routes: [routes."example.org"] host = ..., see sample-config.toml
    "dkim": {
        "enabled": Key(True, bool, "sign mail from local domains that have a key under dkim/"),
    },
    "mailauth": {
        "spf": Key(True, bool, "check SPF (RFC 7208) of mail from other servers on port 25: the MAIL FROM "
                   "domain, or the HELO name for the null sender; the result goes into Authentication-Results"),
        "dkim": Key(True, bool, "verify every DKIM signature (RFC 6376) and the ARC chain (RFC 8617) of mail "
                    "from other servers on port 25"),
        "dmarc": Key(True, bool, "apply DMARC (RFC 7489): the From domain's policy when neither SPF nor DKIM "
                     "passes aligned with it"),
        "dmarc_reject": Key("reject", str, "what a failing message of a p=reject domain gets: 'reject' "
                            "(550 5.7.1), 'quarantine' (filed into quarantine_folder) or 'none' (only the header)",
                            one_of("reject", "quarantine", "none")),
        "dmarc_quarantine": Key("quarantine", str, "what a failing message of a p=quarantine domain gets: "
                                "'quarantine' or 'none'", one_of("quarantine", "none")),
        "quarantine_folder": Key("Junk", str, "folder for quarantined mail (INBOX when a mailbox has no such folder)",
                                 non_empty),
        "spf_fail": Key("none", str, "what an SPF fail alone gets: 'none' (the header; DMARC decides) or "
                        "'reject' (550 5.7.23, as policyd-spf does)", one_of("none", "reject")),
        "defer_on_temperror": Key(True, bool, "answer 451 (try again later) when a DNS failure leaves DMARC "
                                  "undecided; false = accept with dmarc=temperror. Never a 5xx"),
        "dns_timeout_s": Key(5, (int, float), "time allowed for each DNS lookup of these checks (servers: "
                             "queue.nameservers)", in_range(0.1, 60)),
        "dns_cache_entries": Key(10000, int, "DNS answers of the checks kept in each serving process, each "
                                 "for its TTL (at most an hour); 0 = ask every time", in_range(0, 1_000_000)),
        "time_limit_s": Key(30, (int, float), "time allowed for all the DNS lookups of one message's checks; "
                            "past it the rest are temperror (slow DNS cannot hold the server's workers)",
                            in_range(1, 300)),
        "dkim_max_message_mb": Key(25, (int, float), "larger messages are not DKIM-verified (they would be read "
                                   "into memory) and DMARC is not enforced on them; 0 = no limit", in_range(0)),
        "ignore_networks": Key(["127.0.0.0/8", "::1/128"], list, "clients whose mail is not checked "
                               "(OpenDMARC's IgnoreHosts); trusted networks and authenticated users never are",
                               networks),
    },
    "antivirus": antivirus_settings.KEYS,
    "spam_scan": spamscan_settings.KEYS,    # rspamd / spamd (engine/accept/spamscan.py)
    "spam_learn": learn_settings.KEYS,      # learning from users' Junk moves (engine/learning.py)
    "attachments": attachment_settings.KEYS,       # attachment blocking (engine/accept/attachments.py)
    "greylist": {
        "enabled": Key(False, bool, "greylisting on port 25 (RFC 6647): the first try of an unknown (client network, "
                       "sender, recipient) gets 451 4.7.1, a retry after delay_minutes passes. Never for AUTH, "
                       "submission, trusted networks or mail to postmaster; off per domain with greylisting = false"),
        "delay_minutes": Key(5, (int, float), "a retry is accepted once this long after the first try", in_range(0, 1440)),
        "unused_expiry_hours": Key(24, (int, float), "a triplet never retried is forgotten after this long",
                                   in_range(0.01)),
        "pass_expiry_days": Key(36, (int, float), "a triplet that passed is kept this long after its last use",
                                in_range(0.01)),
        "ip_prefix_v4": Key(24, int, "IPv4 clients count by network of this many bits (32 = each address)", in_range(8, 32)),
        "ip_prefix_v6": Key(64, int, "IPv6 clients count by network of this many bits (128 = each address)",
                            in_range(16, 128)),
        "spf_bypass": Key(True, bool, "no greylisting when the sender's SPF passes for the client (big senders "
                          "retry from other addresses); the result is reused by the mailauth check"),
        "whitelist_networks": Key(["127.0.0.0/8", "::1/128"], list, "clients never greylisted: addresses, "
                                  "networks or wildcard patterns (192.168.*)", ip_patterns),
        "whitelist_sender_domains": Key([], list, "sender domains never greylisted (wildcards: *.example.com); "
                                        "a sender address is easily forged, prefer whitelist_networks",
                                        domain_patterns),
    },
    "spam": spam_settings.SPAM_KEYS,        # the spam score's thresholds (engine/accept/spamscore.py)
    "dnsbl": spam_settings.DNSBL_KEYS,      # DNS block lists (engine/accept/dnslists.py)
    "helo_checks": helo_settings.KEYS,      # HELO and sender checks of port 25 (engine/accept/helochecks.py)
    "access": access_settings.KEYS,     # access lists, IP ranges, incoming relays (engine/access/)
    "srs": srs_settings.KEYS,          # Sender Rewriting Scheme (engine/srs_settings.py)
    "send_limits": sendlimits_settings.KEYS,     # outbound limits per account (engine/sendlimits_settings.py)
    "sendmail": {
        "sender_domain": Key("", str, "domain of a local user's address for sendmail(1): login@domain "
                             "('' = server.default_domain, else server.hostname)"),
        "trusted_users": Key([], list, "local users who may give sendmail(1) any sender with -f "
                             "(root and the server's own user always may)"),
        "allowed_senders": Key({}, dict, "other senders a local user may give with -f: "
                               "{ \"www-data\" = [\"noreply@example.com\"] } (\"*\" = any)"),
    },
    "pickup": {
        "enabled": Key(True, bool, "take *.eml files dropped into pickup/"),
        "poll_seconds": Key(2.0, (int, float), "polling interval when file events are unavailable", in_range(0.1)),
        "settle_seconds": Key(1.0, (int, float), "a file is taken once its size and mtime are unchanged this long "
                              "(writers should write NAME.tmp and rename it to NAME.eml)", in_range(0, 600)),
        "use_events": Key(True, bool, "watch pickup/ with file events (watchdog); false = polling only"),
    },
}

# Sections whose keys are free-form tables (validated by their own module).
OPEN_SECTIONS = {"routes"}


def defaults() -> dict:
    out: dict = {}
    for section, keys in SCHEMA.items():
        node = out
        for part in section.split("."):
            node = node.setdefault(part, {})
        for name, key in keys.items():
            node[name] = _copy(key.default)
    return out


def _copy(v):
    return list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v


def _type_name(t) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             list: "a list", dict: "a table"}
    if isinstance(t, tuple):
        return "a number" if set(t) == {int, float} else " or ".join(names[x] for x in t)
    return names[t]


def _type_ok(value, t) -> bool:
    types = t if isinstance(t, tuple) else (t,)
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


# Keys an earlier version wrote, still read (a file edited by hand must keep loading):
# (section, old key) -> old value -> (new key, its value).
REPLACED_KEYS = {
    # true: bare LF mended for trusted clients; false: refused from all, as it was
    ("relay", "allow_bare_lf_from_trusted"): lambda v: ("bare_newline", "normalize_trusted" if v else "reject"),
}


def validate(data: dict, text: str, where: str) -> tuple[SimpleNamespace, list[str]]:
    """Merge data over the defaults; returns (settings, problems)."""
    problems: list[str] = []
    merged = defaults()

    def problem(path: list[str], msg: str):
        line = tomlfile.find_line(text, path)
        problems.append(f"{where}:{line}: {'.'.join(path)}: {msg}")

    sections = {tuple(s.split(".")): s for s in SCHEMA}
    prefixes = {p[:i] for p in sections for i in range(1, len(p))}

    def walk(node: dict, path: tuple):
        for name, value in node.items():
            here = path + (name,)
            if here in sections:
                if not isinstance(value, dict):
                    problem(list(here), "must be a table")
                    continue
                if sections[here] in OPEN_SECTIONS:
                    _set(merged, here, value)
                    continue
                schema = SCHEMA[sections[here]]
                for key, v in value.items():
                    if (sections[here], key) in REPLACED_KEYS and isinstance(v, bool):
                        key, v = REPLACED_KEYS[sections[here], key](v)
                    if key not in schema:
                        problem(list(here + (key,)), f"unknown key (known: {', '.join(schema)})")
                        continue
                    k = schema[key]
                    if not _type_ok(v, k.type):
                        problem(list(here + (key,)), f"must be {_type_name(k.type)}, not {type(v).__name__}")
                        continue
                    issue = control_problem(v) or (k.check(v) if k.check else None)
                    if issue:
                        problem(list(here + (key,)), issue)
                        continue
                    _set(merged, here + (key,), v)
            elif here in prefixes and isinstance(value, dict):
                walk(value, here)
            else:
                known = sorted({p[len(path)] for p in sections if p[:len(path)] == path})
                problem(list(here), f"unknown {'section' if isinstance(value, dict) else 'key'} "
                                    f"(known: {', '.join(known)})")

    walk(data, ())
    return _namespace(merged), problems


def _set(tree: dict, path: tuple, value) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def _namespace(d: dict, path: tuple = ()) -> SimpleNamespace:
    """Sections become attribute namespaces; table-valued keys stay dicts."""
    sections = {tuple(s.split(".")) for s in SCHEMA if s not in OPEN_SECTIONS}
    prefixes = {p[:i] for p in sections for i in range(1, len(p) + 1)}
    ns = SimpleNamespace()
    for k, v in d.items():
        here = path + (k,)
        setattr(ns, k, _namespace(v, here) if here in prefixes else v)
    return ns


def load(path: Path, display: str | None = None) -> SimpleNamespace:
    """Load and validate mailctl.toml; raise ConfigError listing every problem."""
    where = display or str(path)
    data, text = tomlfile.read(path, where)
    if not any(isinstance(v, dict) for v in data.values()):     # every key lives in a [section]
        raise ConfigError(f"{where}:1: the file is empty or truncated (no [section] tables); restore it from "
                          f"a backup (sample-config.toml shows every key)")
    settings, problems = validate(data, text, where)
    if problems:
        raise ConfigError(problems[0], problems)
    return settings


def as_dict(ns: Any) -> Any:
    if isinstance(ns, SimpleNamespace):
        return {k: as_dict(v) for k, v in vars(ns).items()}
    return ns


MESSAGE_SIZE_CEILING = 1 << 30     # bytes: the most any message input reads (DESIGN §3.5)


def message_size_limit(settings) -> int:
    """The largest message in bytes, for every way in (SMTP, pickup, sendmail, mailctl
    send): limits.max_message_size_mb, or the ceiling when it is 0 ("no limit")."""
    return int(settings.limits.max_message_size_mb * 1024 * 1024) or MESSAGE_SIZE_CEILING


def get(ns: SimpleNamespace, dotted: str) -> Any:
    """A value by dotted key, e.g. 'limits.max_recipients'."""
    node: Any = ns
    for part in dotted.split("."):
        if isinstance(node, SimpleNamespace) and hasattr(node, part):
            node = getattr(node, part)
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(dotted)
    return node


# -- the commented sample (sample-config.toml, and what 'mailctl init' writes) -----

def toml_value(v) -> str:
    """One value as inline TOML (arrays and tables on one line)."""
    import tomlkit
    if isinstance(v, list) and any(isinstance(x, dict) for x in v):     # [dnsbl]'s lists of tables
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        table = tomlkit.inline_table()
        table.update(v)
        return table.as_string()
    return tomlkit.item(v).as_string()


def render_sample(values: dict[str, Any] | None = None) -> str:
    """Every key with its doc and default. `values` ('section.key' -> value) are
    written as set; every other key stays commented out at its default."""
    values = values or {}
    out = ["# mailctl.toml: server settings. Every key is shown with its default;",
           "# uncomment a line to change it. 'mailctl config check' validates this file.", ""]
    for section, keys in SCHEMA.items():
        out.append(f"[{section}]")
        if section == "routes":
            out += ['# Per-domain routes, for example:',
                    '#   [routes."example.org"]',
                    '#   host = "mx.internal.example.org"   # deliver there instead of MX lookup',
                    '#   port = 25',
                    '#   tls = "starttls"                   # none, starttls or implicit',
                    '#   accept = true                      # accept mail for it here (backup MX)']
        for name, key in keys.items():
            dotted = f"{section}.{name}"
            out.append(f"# {key.doc}")
            if dotted in values:
                out.append(f"{name} = {toml_value(values[dotted])}")
            else:
                out.append(f"# {name} = {toml_value(key.default)}")
        if section == "access":
            out += access_settings.EXAMPLE
        out.append("")
    return "\n".join(out)
