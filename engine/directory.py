"""The directory: domains, accounts, aliases, forwarding and lists, read from
domains/<domain>.toml, and `resolve(address)` which turns a recipient into local
mailboxes, external addresses, or a rejection with the reference reply text.

A loaded Directory is an immutable snapshot; changes go through the functions in
`engine.directory_edit`, which rewrite one domain file atomically under a lock.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from . import nofollow, sendlimits_settings, tomlfile
from .domainkeys import ACCOUNT_KEYS, ALIAS_KEYS, DOMAIN_KEYS, LIST_KEYS, TABLES
from .addresses import check_local, normalize_domain, parse_address, parse_target
from .errors import ConfigError, InvalidInput
from .root import Root
# a recipient refused gets the reply text of SMTP's table (feature-inventory §1.8)
from .smtp.replies import (ACCOUNT_INACTIVE, ALIAS_INACTIVE, BAD_ADDRESS, DOMAIN_DISABLED, LIST_INACTIVE,
                           LIST_NOT_AUTHORIZED, TOO_MANY_FORWARDS, UNKNOWN_USER, Rejection)

LISTING_PROBLEM = "domains/:"                                  # domains/ itself cannot be read
_PROBLEM_FILE = re.compile(r"domains/([^/:]+)\.toml:")      # the domain file a problem names


# -- the records ------------------------------------------------------------------

@dataclass(frozen=True)
class Account:
    domain: str
    local: str
    password: str = ""
    name: str = ""
    quota_mb: int = 0
    enabled: bool = True
    forward: tuple[str, ...] = ()
    forward_keep_copy: bool = True
    send_limits: tuple = ()          # (key, value) of its send_* overrides (engine/sendlimits_settings.py)
    spam_filter: bool = True         # false: never Junk nor refused as spam (still virus-scanned)
    signature_text: str = ""         # its signature on submitted mail (engine/signatures.py)
    signature_html: str = ""

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"

    def public(self) -> dict:
        """What may be shown: never the password hash."""
        return {"address": self.address, "name": self.name, "quota_mb": self.quota_mb,
                "enabled": self.enabled, "forward": list(self.forward),
                "forward_keep_copy": self.forward_keep_copy, "has_password": bool(self.password)}


@dataclass(frozen=True)
class Alias:
    domain: str
    local: str
    targets: tuple[str, ...]
    enabled: bool = True

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"

    def public(self) -> dict:
        return {"address": self.address, "targets": list(self.targets), "enabled": self.enabled}


@dataclass(frozen=True)
class MailingList:
    domain: str
    local: str
    mode: str = "public"
    sender: str = ""
    members: tuple[str, ...] = ()
    enabled: bool = True
    require_auth: bool = False       # hMailServer's "require SMTP authentication"

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"

    def public(self) -> dict:
        return {"address": self.address, "mode": self.mode, "sender": self.sender,
                "members": list(self.members), "enabled": self.enabled, "require_auth": self.require_auth}


@dataclass
class Domain:
    name: str
    enabled: bool = True
    aliases: tuple[str, ...] = ()
    catch_all: str = ""
    max_message_size_mb: float = 0
    max_accounts: int = 0
    default_quota_mb: int = 0
    greylisting: bool = True          # greylist.enabled applies to this domain (hMailServer's switch)
    spam_scoring: bool = True         # spam.enabled applies to its recipients (engine/accept/spamscore.py)
    spam_mark_score: float | None = None      # None: spam.mark_score
    spam_reject_score: float | None = None    # None: spam.reject_score (0 = never)
    antivirus: bool = True            # antivirus.enabled applies to mail for this domain
    spam_scan: bool = True            # spam_scan.enabled applies to mail for this domain (accept/spamscan.py)
    attachment_blocking: bool = True  # attachments.enabled applies to mail for this domain
    attachment_action: str = ""       # "" = attachments.action; "replace" or "refuse"
    junk_folder: str = ""             # "" = spam.junk_folder: where its spam is filed, and learned from
    mirror: str = ""                  # an address that gets a copy of every message to or from the domain
    signature_text: str = ""          # the domain's signature or disclaimer (engine/signatures.py)
    signature_html: str = ""
    signature_mode: str = "if_none"   # if_none, overwrite, append
    signature_replies: bool = False
    signature_local: bool = False
    accounts: dict[str, Account] = field(default_factory=dict)
    alias_map: dict[str, Alias] = field(default_factory=dict)
    lists: dict[str, MailingList] = field(default_factory=dict)

    def public(self) -> dict:
        return {"domain": self.name, "enabled": self.enabled, "domain_aliases": list(self.aliases),
                "catch_all": self.catch_all, "max_message_size_mb": self.max_message_size_mb,
                "max_accounts": self.max_accounts, "default_quota_mb": self.default_quota_mb,
                "greylisting": self.greylisting, "spam_scoring": self.spam_scoring,
                "spam_mark_score": self.spam_mark_score, "spam_reject_score": self.spam_reject_score,
                "accounts": len(self.accounts), "address_aliases": len(self.alias_map),
                "lists": len(self.lists)}


def list_requires_auth_by_default(mode: str) -> bool:
    """An announce list takes mail only from authenticated senders unless it says otherwise:
    its one sender's address is the easiest to forge."""
    return mode == "announce"


class _Problems:
    def __init__(self, where: str, text: str):
        self.where, self.text, self.items = where, text, []

    def add(self, path: list[str], msg: str) -> None:
        line = tomlfile.find_line(self.text, path) if self.text else 1
        self.items.append(f"{self.where}:{line}: {'.'.join(path)}: {msg}")


def _check_table(data: dict, keys: dict, path: list[str], problems: _Problems) -> dict:
    """Keep the valid keys of one table; report unknown and mistyped ones."""
    good = {}
    for k, v in data.items():
        if k not in keys:
            problems.add(path + [k], f"unknown key (known: {', '.join(keys)})")
        elif not keys[k][0](v):
            problems.add(path + [k], f"must be {keys[k][1]}")
        else:
            good[k] = v
    return good


def parse_domain(name: str, data: dict, text: str, where: str, settings=None) -> tuple[Domain, list[str]]:
    """Build a Domain from a parsed file, collecting every problem with its line."""
    problems = _Problems(where, text)
    if not data:        # an editor crash or a full disk, not a domain without settings
        return Domain(name=name), [f"{where}:1: the file is empty or truncated (a domain file holds at least "
                                   f"enabled = true); restore it from a backup"]
    limits = getattr(settings, "limits", None)
    max_targets = getattr(limits, "max_forward_targets", 20)
    top = {k: v for k, v in data.items() if k not in TABLES}
    d = _check_table(top, DOMAIN_KEYS, [], problems)
    domain = Domain(name=name, enabled=d.get("enabled", True), catch_all=d.get("catch_all", ""),
                    max_message_size_mb=d.get("max_message_size_mb", 0),
                    max_accounts=d.get("max_accounts", 0), default_quota_mb=d.get("default_quota_mb", 0),
                    greylisting=d.get("greylisting", True), spam_scoring=d.get("spam_scoring", True),
                    spam_mark_score=d.get("spam_mark_score"), spam_reject_score=d.get("spam_reject_score"),
                    antivirus=d.get("antivirus", True), spam_scan=d.get("spam_scan", True),
                    attachment_blocking=d.get("attachment_blocking", True),
                    attachment_action=d.get("attachment_action", ""), junk_folder=d.get("junk_folder", ""),
                    mirror=d.get("mirror", ""), signature_text=d.get("signature_text", ""),
                    signature_html=d.get("signature_html", ""), signature_mode=d.get("signature_mode", "if_none"),
                    signature_replies=d.get("signature_replies", False), signature_local=d.get("signature_local", False))
    aliases = []
    for a in d.get("domain_aliases", []):
        try:
            aliases.append(normalize_domain(a))
        except InvalidInput as e:
            problems.add(["domain_aliases"], str(e))
    domain.aliases = tuple(aliases)
    if domain.catch_all:
        _check_targets([domain.catch_all], name, ["catch_all"], problems, max_targets)

    seen: dict[str, str] = {}

    def entries(table: str):
        raw = data.get(table, {})
        if not isinstance(raw, dict):
            problems.add([table], "must be a table of entries like [" + table + ".name]")
            return
        for local, value in raw.items():
            path = [table, local]
            try:
                key = check_local(local, "name")
            except InvalidInput as e:
                problems.add(path, str(e))
                continue
            if key != local:
                problems.add(path, f"names are lower case; write {key!r}")
                continue
            if key in seen:
                problems.add(path, f"{key}@{name} is already defined in [{seen[key]}]")
                continue
            if not isinstance(value, dict):
                problems.add(path, "must be a table")
                continue
            seen[key] = table
            yield key, value, path

    for local, value, path in entries("accounts"):
        v = _check_table(value, ACCOUNT_KEYS, path, problems)
        fwd = _check_targets(v.get("forward", []), name, path + ["forward"], problems, max_targets)
        domain.accounts[local] = Account(name, local, v.get("password", ""), v.get("name", ""),
                                         v.get("quota_mb", 0), v.get("enabled", True), fwd,
                                         v.get("forward_keep_copy", True),
                                         tuple((k, v[k]) for k in sendlimits_settings.ACCOUNT_KEYS if k in v),
                                         v.get("spam_filter", True), v.get("signature_text", ""),
                                         v.get("signature_html", ""))
    for local, value, path in entries("aliases"):
        v = _check_table(value, ALIAS_KEYS, path, problems)
        if "targets" not in value:
            problems.add(path, "needs targets = [\"address\", ...]")
        targets = _check_targets(v.get("targets", []), name, path + ["targets"], problems, max_targets)
        domain.alias_map[local] = Alias(name, local, targets, v.get("enabled", True))
    for local, value, path in entries("lists"):
        v = _check_table(value, LIST_KEYS, path, problems)
        members = _check_targets(v.get("members", []), name, path + ["members"], problems, 100000)
        sender = v.get("sender", "")
        if sender:
            sender = (_check_targets([sender], name, path + ["sender"], problems, 1) or ("",))[0]
        mode = v.get("mode", "public")
        if mode == "announce" and not sender:
            problems.add(path + ["mode"], "announce mode needs sender = \"address\"")
        require_auth = v.get("require_auth", list_requires_auth_by_default(mode))
        domain.lists[local] = MailingList(name, local, mode, sender, members, v.get("enabled", True), require_auth)
    return domain, problems.items


def _check_targets(targets: list[str], domain: str, path: list[str], problems: _Problems,
                   limit: int) -> tuple[str, ...]:
    out = []
    if len(targets) > limit:
        problems.add(path, f"{len(targets)} targets; at most {limit} allowed (limits.max_forward_targets)")
    for t in targets:
        try:
            out.append(str(parse_target(t, domain)))
        except InvalidInput as e:
            problems.add(path, str(e))
    return tuple(out)


# -- the postmaster -----------------------------------------------------------------
# RFC 5321 §4.5.1: <Postmaster> (any case, no domain) and postmaster@ every local domain
# must be accepted, without authentication. These two decide where such mail goes, for
# RCPT (smtp/policy.py), delivery (resolve below) and notices to the postmaster
# (outbound/dsn.py); the SMTP policy imports this module, so they live here.

POSTMASTER = "postmaster"


def administrator(settings) -> str:
    """The administrator's address (server.postmaster), '' when not set: failure notices
    go there, and so does mail to postmaster@ a local domain that has no account, alias
    or list of that name."""
    return getattr(getattr(settings, "server", None), "postmaster", "") or ""


# -- resolution --------------------------------------------------------------------

@dataclass
class Resolution:
    address: str                         # normalised recipient
    local_domain: bool                   # the domain is ours (or an alias of ours)
    mailboxes: list[Account] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    rejection: Rejection | None = None
    # the address is a list that takes mail only from authenticated senders; the SMTP
    # policy decides (local submissions through pickup, sendmail or mailctl count as such)
    needs_authenticated_sender: bool = False

    @property
    def ok(self) -> bool:
        return self.rejection is None


class _Loop(Exception):
    pass


def _domain_files(root: Root) -> list[os.DirEntry]:
    """domains/*.toml, without following links: a file that is a link is skipped (and
    logged once), so no account or password hash comes from outside the root; anything
    else that is not a file is left to tomlfile.read to name as a problem."""
    fd = nofollow.open_dir(root.domains_dir)
    try:
        with os.scandir(fd) as it:
            entries = [e for e in it if e.name.endswith(".toml") and not e.name.startswith(".")]
    finally:
        os.close(fd)
    for e in entries:
        if e.is_symlink():
            nofollow.report(root.domains_dir / e.name)
    return [e for e in entries if not e.is_symlink()]


class Directory:
    """An immutable snapshot of every domain file."""

    def __init__(self, domains: dict[str, Domain], settings=None):
        self.domains = domains
        self.settings = settings
        limits = getattr(settings, "limits", None)
        self.max_depth = getattr(limits, "max_forward_depth", 10)
        relay = getattr(settings, "relay", None)
        self.delimiter = getattr(relay, "recipient_delimiter", "")
        self.names: dict[str, str] = {}          # domain or domain alias -> primary
        for d in domains.values():
            self.names[d.name] = d.name
        for d in domains.values():
            for a in d.aliases:
                self.names.setdefault(a, d.name)

    # -- loading --
    @classmethod
    def load(cls, root: Root, settings=None, strict: bool = True) -> "Directory":
        directory, problems = cls.load_with_problems(root, settings)
        if problems and strict:
            raise ConfigError(problems[0] + (f" (and {len(problems) - 1} more; run 'mailctl config check')"
                                             if len(problems) > 1 else ""), problems)
        return directory

    @classmethod
    def load_with_problems(cls, root: Root, settings=None,
                           override: dict[str, tuple[dict, str]] | None = None) -> tuple["Directory", list[str]]:
        """Read every domains/*.toml. `override` replaces one file's content (for checks before a write)."""
        problems: list[str] = []
        domains: dict[str, Domain] = {}
        files = {}
        try:
            for entry in _domain_files(root):
                files[entry.name[:-5]] = root.domains_dir / entry.name
        except nofollow.LinkRefused:
            problems.append(f"{LISTING_PROBLEM} cannot be listed: a symbolic link inside the mail root (not followed)")
        except FileNotFoundError:
            pass
        except OSError as e:
            problems.append(f"{LISTING_PROBLEM} cannot be listed: {e.strerror}")
        for name in (override or {}):
            files.setdefault(name, root.domain_file(name))
        for stem in sorted(files):
            shown = stem if stem.isprintable() else stem.encode("unicode_escape").decode("ascii")
            where = f"domains/{shown}.toml"      # a problem is one line, whatever the file is called
            try:
                name = normalize_domain(stem)
                if name != stem:
                    raise InvalidInput(f"write the file name in lower-case ASCII: domains/{name}.toml")
            except InvalidInput as e:
                problems.append(f"{where}:1: file name: {e}")
                continue
            try:
                if override and stem in override:
                    data, text = override[stem]
                else:
                    data, text = tomlfile.read(files[stem], where)
            except ConfigError as e:
                problems.extend(e.problems)
                continue
            domain, found = parse_domain(name, data, text, where, settings)
            problems.extend(found)
            domains[name] = domain
        directory = cls(domains, settings)
        problems.extend(directory._cross_checks())
        return directory, problems

    def with_last_good(self, problems: list[str], last_good: "Directory") -> "Directory":
        """This directory with every domain file named in `problems` replaced by its
        version in `last_good` (or left out when it had none), so one broken file never
        turns the addresses it held into unknown users. The whole of `last_good` when
        the mix does not hold together."""
        if any(p.startswith(LISTING_PROBLEM) for p in problems):
            return Directory(last_good.domains, self.settings)
        broken = {m.group(1) for m in map(_PROBLEM_FILE.match, problems) if m}
        domains = {n: d for n, d in self.domains.items() if n not in broken}
        domains.update((n, last_good.domains[n]) for n in broken if n in last_good.domains)
        merged = Directory(domains, self.settings)
        return merged if not merged._cross_checks() else Directory(last_good.domains, self.settings)

    def _cross_checks(self) -> list[str]:
        problems = []
        owners: dict[str, str] = {}
        for d in self.domains.values():
            for a in d.aliases:
                if a in self.domains:
                    problems.append(f"domains/{d.name}.toml:1: domain_aliases: {a} is a domain of its own")
                elif a in owners:
                    problems.append(f"domains/{d.name}.toml:1: domain_aliases: {a} is already an alias of {owners[a]}")
                else:
                    owners[a] = d.name
        for d in self.domains.values():
            if d.catch_all and self.is_local_domain(d.catch_all.rpartition("@")[2]):
                target = self.resolve(d.catch_all, catch_all=False)
                if not target.ok:
                    problems.append(f"domains/{d.name}.toml:1: catch_all: {d.catch_all}: {target.rejection.text}")
            # only entries that point elsewhere can loop; plain accounts cannot
            for entry in [*d.alias_map.values(), *d.lists.values(),
                          *(a for a in d.accounts.values() if a.forward)]:
                problem = self._loop_problem(entry.address)
                if problem:
                    problems.append(f"domains/{d.name}.toml:1: {entry.address}: {problem}")
        return problems

    def _loop_problem(self, address: str) -> str | None:
        try:
            self._expand(address, None, 0, [], set(), Resolution(address, True), check_list_sender=False)
        except _Loop as e:
            return str(e)
        return None

    # -- lookups --
    def canonical_domain(self, domain: str) -> str | None:
        return self.names.get(domain)

    def domain(self, name: str) -> Domain | None:
        primary = self.names.get(name)
        return self.domains.get(primary) if primary else None

    def account(self, address: str) -> Account | None:
        """The account behind an address (domain aliases applied), or None."""
        try:
            a = parse_address(address)
        except InvalidInput:
            return None
        d = self.domain(a.domain)
        return d.accounts.get(a.local) if d else None

    def login(self, user: str) -> Account | None:
        """The account a login name means: full address, or local part in the default domain."""
        if "@" not in user:
            default = getattr(getattr(self.settings, "server", None), "default_domain", "")
            if not default:
                return None
            user = f"{user}@{default}"
        return self.account(user)

    def is_local_domain(self, domain: str) -> bool:
        return domain in self.names

    def postmaster(self) -> str:
        """The address a bare <postmaster> means: postmaster@ server.default_domain when it
        is ours, else @ the first local domain (then resolved as any address: its own
        account or alias, else the administrator); the administrator without domains."""
        default = getattr(getattr(self.settings, "server", None), "default_domain", "")
        domain = self.names.get(default) or min(self.domains, default="")
        return f"{POSTMASTER}@{domain}" if domain else administrator(self.settings)

    def all_accounts(self):
        for d in self.domains.values():
            yield from d.accounts.values()

    # -- resolve --
    def resolve(self, address: str, sender: str | None = None, catch_all: bool = True) -> Resolution:
        """Where mail to `address` goes: local mailboxes, external addresses, or a rejection.

        `sender` is the envelope sender, used for list permissions. catch_all=False asks
        whether the address itself exists (used to check alias and catch-all targets).
        """
        try:
            a = parse_address(address)
        except InvalidInput:
            return Resolution(address, False, rejection=BAD_ADDRESS)
        primary = self.names.get(a.domain)
        if primary is None:
            return Resolution(str(a), False, external=[str(a)])
        result = Resolution(str(a), True)
        try:
            rejection = self._expand(str(a), sender, 0 if catch_all else 1, [], set(), result,
                                     check_list_sender=True)
        except _Loop:
            result.mailboxes, result.external = [], []
            result.rejection = TOO_MANY_FORWARDS
            return result
        if rejection:
            result.rejection = rejection
        elif not result.mailboxes and not result.external:
            result.rejection = TOO_MANY_FORWARDS if catch_all or self._defined(str(a)) else UNKNOWN_USER
        return result

    def _expand(self, address: str, sender, depth: int, path: list[str], seen: set,
                result: Resolution, check_list_sender: bool) -> Rejection | None:
        """Add the final recipients of address to result. Returns a rejection of the
        address itself; rejections of nested targets drop only that target."""
        local, _, dom = address.rpartition("@")
        primary = self.names.get(dom)
        if primary is None:                      # an external target
            if address not in seen:
                seen.add(address)
                result.external.append(address)
            return None
        address = f"{local}@{primary}"
        if address in path:
            raise _Loop("loop: " + " -> ".join(path[path.index(address):] + [address]))
        if depth > self.max_depth:
            raise _Loop("more than limits.max_forward_depth hops: " + " -> ".join(path + [address]))
        d = self.domains[primary]
        if not d.enabled:
            return DOMAIN_DISABLED
        here = path + [address]

        def follow(targets):
            # nested targets: list permissions are checked only for the address the sender used
            for t in targets:
                self._expand(t, sender, depth + 1, here, seen, result, False)

        account = d.accounts.get(local)
        if account is not None:
            if not account.enabled:
                return ACCOUNT_INACTIVE
            forwards = [t for t in account.forward if t != account.address]
            keep = account.forward_keep_copy or len(forwards) < len(account.forward) or not forwards
            if keep and account.address not in seen:
                seen.add(account.address)
                result.mailboxes.append(account)
            follow(forwards)
            return None
        alias = d.alias_map.get(local)
        if alias is not None:
            if not alias.enabled:
                return ALIAS_INACTIVE
            follow(alias.targets)
            return None
        lst = d.lists.get(local)
        if lst is not None:
            if not lst.enabled:
                return LIST_INACTIVE
            if check_list_sender and lst.require_auth:
                result.needs_authenticated_sender = True
            if check_list_sender and not self._may_post(lst, sender):
                return LIST_NOT_AUTHORIZED
            follow(lst.members)
            return None
        if local == POSTMASTER and depth == 0:
            admin = administrator(self.settings).lower()
            if admin and admin != address:        # else: no one to give it to (or itself)
                follow([admin])
                return None
        if self.delimiter and self.delimiter in local:
            base = local.split(self.delimiter, 1)[0]
            if base and (base in d.accounts or base in d.alias_map or base in d.lists):
                return self._expand(f"{base}@{primary}", sender, depth, path, seen, result, check_list_sender)
        if d.catch_all and depth == 0:
            follow([d.catch_all])
            return None
        return UNKNOWN_USER if depth == 0 else None

    def _defined(self, address: str) -> bool:
        local, _, dom = address.rpartition("@")
        d = self.domains.get(self.names.get(dom, ""))
        return d is not None and (local in d.accounts or local in d.alias_map or local in d.lists)

    def _may_post(self, lst: MailingList, sender: str | None) -> bool:
        if lst.mode == "public":
            return True
        try:
            who = str(parse_address(sender)) if sender else ""
        except InvalidInput:
            return False
        if lst.mode == "announce":
            return bool(who) and who == lst.sender
        return who in lst.members or (bool(lst.sender) and who == lst.sender)
