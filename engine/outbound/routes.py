"""Where outbound mail for a domain goes: a per-domain route, the smart host, or MX.

[routes."example.org"]     host, port, tls, username, password_file, retry_minutes,
                           accept (accept mail for it here: backup MX), addresses (only these)
[smarthost]                host, port, tls, username, password_file

Routes are validated here; problems read 'file:line: key: problem'.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..addresses import normalize_domain
from ..errors import ConfigError, InvalidInput, MailError
from .. import settings as settings_mod, tomlfile
from ..settingkeys import host_or_ip_problem

TLS_MODES = ("none", "starttls", "implicit", "starttls-required")
ROUTE_KEYS = {
    "host": (str, "relay host name or IP address"),
    "port": (int, "TCP port"),
    "tls": (str, "none, starttls or implicit"),
    "username": (str, "AUTH user name"),
    "password_file": (str, "file holding the AUTH password"),
    "retry_minutes": (list, "retry schedule in minutes for this domain"),
    "accept": (bool, "accept mail for this domain here (backup MX)"),
    "addresses": (list, "only these recipients are accepted ([] = all)"),
}


@dataclass(frozen=True)
class Route:
    domain: str                     # "" for the smart host
    host: str
    port: int = 25
    tls: str = "starttls"
    username: str = ""
    password_file: str = ""
    retry_minutes: tuple = ()
    accept: bool = False
    addresses: tuple = field(default_factory=tuple)

    def password(self, root) -> str:
        if not self.password_file:
            return ""
        path = Path(self.password_file)
        if not path.is_absolute():
            path = root.path / path
        try:
            text = path.read_text("utf-8")
        except OSError as e:
            raise MailError(f"{self.password_file}: cannot read the relay password: {e.strerror}") from None
        return text.splitlines()[0] if text else ""

    def allows(self, address: str) -> bool:
        return not self.addresses or address.lower() in self.addresses


def parse(settings, text: str = "", where: str = "mailctl.toml") -> tuple[dict[str, Route], list[str]]:
    """The valid routes and the problems of the invalid ones."""
    raw = getattr(settings, "routes", {}) or {}
    routes: dict[str, Route] = {}
    problems: list[str] = []

    def problem(path, msg):
        problems.append(f"{where}:{tomlfile.find_line(text, path) if text else 1}: {'.'.join(path)}: {msg}")

    if isinstance(raw, object) and not isinstance(raw, dict):
        raw = vars(raw)
    for name, table in raw.items():
        path = ["routes", name]
        try:
            domain = normalize_domain(name)
        except (InvalidInput, MailError, ValueError) as e:
            problem(path, f"not a valid domain name ({e})")
            continue
        if not isinstance(table, dict):
            problem(path, "must be a table like [routes.\"example.org\"]")
            continue
        ok = True
        for key, value in table.items():
            if key not in ROUTE_KEYS:
                problem(path + [key], f"unknown key (known: {', '.join(ROUTE_KEYS)})")
                ok = False
                continue
            want = ROUTE_KEYS[key][0]
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                problem(path + [key], f"must be {want.__name__}, not {type(value).__name__}")
                ok = False
        port = table.get("port", 25)
        if isinstance(port, int) and not 1 <= port <= 65535:
            problem(path + ["port"], "must be a port number from 1 to 65535")
            ok = False
        tls = table.get("tls", "starttls")
        if isinstance(tls, str) and tls not in TLS_MODES[:3]:
            problem(path + ["tls"], "must be one of 'none', 'starttls', 'implicit'")
            ok = False
        retry = table.get("retry_minutes", [])
        if isinstance(retry, list) and any(not isinstance(x, (int, float)) or isinstance(x, bool) or x < 0
                                           for x in retry):
            problem(path + ["retry_minutes"], "must be a list of minutes (numbers, 0 or more)")
            ok = False
        host = table.get("host", "")
        bad_host = host_or_ip_problem(host) if isinstance(host, str) and host else None
        if bad_host:
            problem(path + ["host"], bad_host)
            ok = False
        if not table.get("host") and not table.get("accept"):
            problem(path + ["host"], "a route needs a host (or accept = true for a backup MX)")
            ok = False
        if (table.get("username") and not table.get("password_file")):
            problem(path + ["password_file"], "username is set but password_file is not")
            ok = False
        if not ok:
            continue
        routes[domain] = Route(domain=domain, host=str(table.get("host", "")), port=int(port), tls=tls,
                               username=table.get("username", ""), password_file=table.get("password_file", ""),
                               retry_minutes=tuple(retry), accept=bool(table.get("accept", False)),
                               addresses=tuple(a.lower() for a in table.get("addresses", [])))
    return routes, problems


def check(root) -> list[str]:
    """Problems of the routes in mailctl.toml (for 'mailctl config check')."""
    try:
        s = settings_mod.load(root.config_file, "mailctl.toml")
    except ConfigError as e:
        return e.problems
    _, text = tomlfile.read(root.config_file, "mailctl.toml")
    return parse(s, text)[1]


def smarthost(settings) -> Route | None:
    sh = settings.smarthost
    if not sh.host:
        return None
    return Route(domain="", host=sh.host, port=sh.port, tls=sh.tls, username=sh.username,
                 password_file=sh.password_file)


NOT_IN_ROUTE_LIST = "550 Reciprient Not In Route List"     # hMailServer's text, typo included


def inbound(settings, address: str) -> tuple[bool, str | None]:
    """For the SMTP server: does a route make us accept mail for `address` (backup MX,
    DMZ relay)? Returns (accepted, rejection text or None)."""
    domain = address.rpartition("@")[2].lower().rstrip(".")
    route = parse(settings)[0].get(domain)
    if route is None or not route.accept:
        return False, None
    if not route.allows(address):
        return False, NOT_IN_ROUTE_LIST
    return True, None


class Router:
    """Routes for the current settings (built once per settings object)."""

    def __init__(self, settings, text: str = ""):
        self.routes, self.problems = parse(settings, text)
        self.smarthost = smarthost(settings)

    def backup_mx(self, domain: str) -> bool:
        """We accept mail for domain as a backup MX (route with accept and no host)."""
        route = self.routes.get(domain)
        return route is not None and route.accept and not route.host

    def for_domain(self, domain: str) -> Route | None:
        """The route for a destination domain; None means MX delivery."""
        route = self.routes.get(domain)
        if route is not None and route.host:
            return route
        return self.smarthost
