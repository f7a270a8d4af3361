"""hMailServer's IP-range model (feature-inventory §1.4), as [access.ranges.NAME] tables
of mailctl.toml:

  networks              addresses or CIDR networks of the range
  priority              0 to 1000; of the ranges holding a client, the highest wins (then
                        the narrowest network, then the name)
  spam_checks           whether the spam checks run for mail from it (checks_for)
  virus_checks          whether the virus checks run for it (checks_for)
  local_to_local, local_to_external, external_to_local, external_to_external
                        'allow' (no AUTH needed), 'auth' (only for an authenticated client,
                        or one in relay.trusted_networks) or 'deny' (never)

A sender or recipient is local when its domain is one of ours (a domain file, or an
accept = true route: a domain we are backup MX for). The null sender is external.

With no range configured, or for a client in none, nothing here applies: the relay
policy (engine/smtp/policy.py) alone decides, as it always has. A range's defaults
(local and external to local: allow; to external: auth) are that same policy; a range
can forbid a direction, or allow relaying from its clients without AUTH.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InvalidInput
from .patterns import best_match, parse_network, shown

DIRECTIONS = ("local_to_local", "local_to_external", "external_to_local", "external_to_external")
RULES = ("allow", "auth", "deny")
DEFAULT_RULES = {"local_to_local": "allow", "local_to_external": "auth",
                 "external_to_local": "allow", "external_to_external": "auth"}
_TYPES = {"networks": list, "priority": int, "spam_checks": bool, "virus_checks": bool,
          **{d: str for d in DIRECTIONS}}


@dataclass(frozen=True)
class Range:
    name: str
    networks: tuple
    priority: int = 0
    spam_checks: bool = True
    virus_checks: bool = True
    rules: dict = field(default_factory=lambda: dict(DEFAULT_RULES))

    def rule(self, sender_local: bool, recipient_local: bool) -> tuple[str, str]:
        """(direction, its rule) for one delivery."""
        d = f"{'local' if sender_local else 'external'}_to_{'local' if recipient_local else 'external'}"
        return d, self.rules[d]


def parse_range(name: str, table) -> Range:
    """One [access.ranges.NAME] table; InvalidInput names the first problem."""
    if not 1 <= len(name) <= 40 or not all(c.isalnum() or c in "-_." for c in name):
        raise InvalidInput(f"range name {shown(name)}: 1 to 40 letters, digits, '-', '_' or '.'")
    if not isinstance(table, dict):
        raise InvalidInput(f"range {name}: must be a table")
    for key, value in table.items():
        if key not in _TYPES:
            raise InvalidInput(f"range {name}: unknown key {shown(key)} (known: {', '.join(_TYPES)})")
        want = _TYPES[key]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise InvalidInput(f"range {name}: {key} must be {want.__name__}")
        if key in DIRECTIONS and value not in RULES:
            raise InvalidInput(f"range {name}: {key} must be one of {', '.join(RULES)}")
    if not table.get("networks"):
        raise InvalidInput(f"range {name}: networks must list at least one address or network")
    priority = table.get("priority", 0)
    if not 0 <= priority <= 1000:
        raise InvalidInput(f"range {name}: priority must be between 0 and 1000")
    nets = tuple(parse_network(n) if isinstance(n, str) else _not_text(name) for n in table["networks"])
    rules = {d: table.get(d, DEFAULT_RULES[d]) for d in DIRECTIONS}
    return Range(name, nets, priority, table.get("spam_checks", True), table.get("virus_checks", True), rules)


def _not_text(name: str):
    raise InvalidInput(f"range {name}: networks must be strings")


def parse_ranges(tables) -> list[Range]:
    if not isinstance(tables, dict):
        raise InvalidInput("ranges must be a table of named ranges")
    return [parse_range(str(name), table) for name, table in tables.items()]


def ranges_problem(tables) -> str | None:
    """The settings check of access.ranges."""
    try:
        parse_ranges(tables)
    except InvalidInput as e:
        return str(e)
    return None


_parsed: tuple = (None, [])      # (the settings' ranges table, its Ranges): parsed once per load


def configured(settings) -> list[Range]:
    global _parsed
    tables = settings.access.ranges
    if _parsed[0] is not tables:
        _parsed = (tables, parse_ranges(tables) if tables else [])
    return _parsed[1]


def range_for(settings, client_ip: str) -> Range | None:
    """The range that decides for a client: highest priority, then narrowest network, then name."""
    best, best_key = None, None
    for r in configured(settings):
        found = best_match(client_ip, [(n, None) for n in r.networks])
        if found is None:
            continue
        key = (r.priority, found[0], r.name)
        if best_key is None or key > best_key:
            best, best_key = r, key
    return best


def checks_for(settings, client_ip: str) -> tuple[bool, bool]:
    """(spam checks run, virus checks run) for mail from client_ip: what its range says;
    both True for a client in no range. The spam and virus stages ask this (with the
    Envelope's client_ip: the original sender's address behind an incoming relay)."""
    r = range_for(settings, client_ip)
    return (True, True) if r is None else (r.spam_checks, r.virus_checks)

