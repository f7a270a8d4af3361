"""Changes to the directory. Each is one atomic rewrite of one domain file under the
directory lock, validated before it is written: a change that would leave the file
invalid (unknown target, loop, limit exceeded) is refused and nothing is written.
Comments and layout of hand edits are kept (engine.tomlpatch).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from . import tomlfile
from .addresses import Address, normalize_domain, parse_address, parse_target
from .directory import Directory
from .domainkeys import LIST_MODES
from .errors import AlreadyExists, ConfigError, InvalidInput, NotFound
from .root import TOML_MODE, Root, atomic_write, fsync_dir

DIRECTORY_LOCK = "directory"

NEW_DOMAIN = """\
# Domain {name}: its settings, accounts, aliases and lists. Edit freely;
# 'mailctl config check' reports any problem with file and line.
enabled = true
domain_aliases = []     # other names of this domain
catch_all = ""          # address for unknown local parts ("" = reject them)
"""


def _lock(root: Root):
    return root.lock(DIRECTORY_LOCK)


def _where(name: str) -> str:
    return f"domains/{name}.toml"


def _edit_domain(root: Root, settings, name: str, change, check=None):
    """Apply change(doc) to domains/<name>.toml; validate the result with the whole
    directory; `check(directory)` may raise to refuse. Returns change's result."""
    path = root.domain_file(name)
    where = _where(name)

    def validate(data: dict, text: str) -> None:
        directory, problems = Directory.load_with_problems(root, settings, override={name: (data, text)})
        mine = [p for p in problems if p.startswith(where + ":")]
        if mine:
            raise ConfigError(mine[0], mine)
        if check:
            check(directory)

    if not path.exists():
        raise NotFound(f"domain {name} does not exist; add it with 'mailctl domain add {name}'")
    return tomlfile.edit(path, _lock(root), change, display=where, validate=validate)


def primary_domain(root: Root, settings, domain: str) -> str:
    """The domain file a (possibly aliased) domain name lives in."""
    name = normalize_domain(domain)
    if root.domain_file(name).exists():
        return name
    directory = Directory.load(root, settings, strict=False)
    primary = directory.canonical_domain(name)
    if primary is None:
        raise NotFound(f"domain {name} is not served here; add it with 'mailctl domain add {name}'")
    return primary


def _address(root: Root, settings, address: str) -> Address:
    a = parse_address(address)
    return Address(a.local, primary_domain(root, settings, a.domain))


def _taken(doc, local: str) -> str | None:
    for table in ("accounts", "aliases", "lists"):
        if local in doc.get(table, {}):
            return table
    return None


def _table(doc: dict, name: str) -> dict:
    return doc.setdefault(name, {})


_KIND = {"accounts": "an account", "aliases": "an alias", "lists": "a list"}


def _require(doc, table: str, a: Address):
    if a.local not in doc.get(table, {}):
        other = _taken(doc, a.local)
        hint = f" ({a} is {_KIND[other]})" if other else ""
        raise NotFound(f"{_KIND[table][2:] if table != 'aliases' else 'alias'} {a} does not exist{hint}")
    return doc[table][a.local]


# -- domains ---------------------------------------------------------------------

def add_domain(root: Root, settings, name: str) -> str:
    name = normalize_domain(name)
    with _lock(root):
        directory = Directory.load(root, settings, strict=False)
        if root.domain_file(name).exists():
            raise AlreadyExists(f"domain {name} already exists")
        owner = directory.canonical_domain(name)
        if owner:
            raise AlreadyExists(f"{name} is already an alias of domain {owner}")
        root.domains_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(root.domain_file(name), NEW_DOMAIN.format(name=name), mode=TOML_MODE)
    return name


def remove_domain(root: Root, settings, name: str, purge: bool = False) -> str | None:
    """Remove a domain file; its mailboxes move to removed/ unless purge. Returns where they went."""
    name = normalize_domain(name)
    path = root.domain_file(name)
    with _lock(root):
        if not path.exists():
            raise NotFound(f"domain {name} does not exist")
        os.unlink(path)
        fsync_dir(path.parent)
    return _retire(root, root.mail_dir / name, Path(name), purge)


def _retire(root: Root, mailpath: Path, rel: Path, purge: bool) -> str | None:
    """Move a mailbox tree out of mail/ (or delete it with purge)."""
    if not mailpath.exists():
        return None
    if purge:
        shutil.rmtree(mailpath)
        return None
    dest = root.removed_dir / rel.parent / f"{rel.name}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(mailpath, dest)
    fsync_dir(dest.parent)
    fsync_dir(mailpath.parent)
    return root.relative(dest)


def set_domain(root: Root, settings, name: str, **values) -> None:
    """Set top-level domain keys (enabled, catch_all, max_message_size_mb, ...)."""
    name = primary_domain(root, settings, name)
    check = None
    if values.get("catch_all"):
        values["catch_all"] = str(parse_target(values["catch_all"], name))
        check = _targets_resolve([values["catch_all"]], settings)

    def change(doc):
        for k, v in values.items():
            if v is not None:
                doc[k] = v
            elif k in doc:
                del doc[k]                  # None: the default applies again
    _edit_domain(root, settings, name, change, check)


def add_domain_alias(root: Root, settings, domain: str, alias: str) -> None:
    domain, alias = primary_domain(root, settings, domain), normalize_domain(alias)
    directory = Directory.load(root, settings, strict=False)
    if alias in directory.domains:
        raise AlreadyExists(f"{alias} is a domain of its own; remove it first")
    owner = directory.canonical_domain(alias)
    if owner:
        raise AlreadyExists(f"{alias} is already an alias of {owner}")

    def change(doc):
        doc.setdefault("domain_aliases", []).append(alias)
    _edit_domain(root, settings, domain, change)


def remove_domain_alias(root: Root, settings, domain: str, alias: str) -> None:
    domain, alias = primary_domain(root, settings, domain), normalize_domain(alias)

    def change(doc):
        aliases = doc.get("domain_aliases", [])
        if alias not in aliases:
            raise NotFound(f"{alias} is not an alias of {domain}")
        aliases.remove(alias)
    _edit_domain(root, settings, domain, change)


# -- accounts --------------------------------------------------------------------

def add_account(root: Root, settings, address: str, password_hash: str, name: str = "",
                quota_mb: int | None = None) -> str:
    from .maildir import Maildir
    a = _address(root, settings, address)
    # Read the domain file first: a file that does not parse is refused before anything is made.
    data, _ = tomlfile.read(root.domain_file(a.domain), _where(a.domain))
    if quota_mb is None:
        default = data.get("default_quota_mb", 0)
        quota_mb = (default if isinstance(default, int) else 0) or settings.mailbox.default_quota_mb
    if quota_mb < 0:
        raise InvalidInput(f"quota {quota_mb}: must be 0 (unlimited) or more MB")
    # The Maildir first: if we crash before the TOML write, an unused Maildir is harmless.
    Maildir.for_account(root, a.domain, a.local).create(list(settings.mailbox.default_folders),
                                                       quota_bytes=quota_mb * 1024 * 1024)

    def change(doc):
        taken = _taken(doc, a.local)
        if taken:
            raise AlreadyExists(f"{a} already exists as {_KIND[taken]}")
        limit = doc.get("max_accounts", 0)
        if limit and len(doc.get("accounts", {})) >= limit:
            raise InvalidInput(f"domain {a.domain} has its maximum of {limit} accounts (max_accounts)")
        _table(doc, "accounts")[a.local] = {"password": password_hash, "name": name,
                                            "quota_mb": quota_mb, "enabled": True}
    _edit_domain(root, settings, a.domain, change)
    return str(a)


def remove_account(root: Root, settings, address: str, purge: bool = False) -> str | None:
    a = _address(root, settings, address)

    def change(doc):
        _require(doc, "accounts", a)
        del doc["accounts"][a.local]
    _edit_domain(root, settings, a.domain, change)
    return _retire(root, root.mail_dir / a.domain / a.local, Path(a.domain) / a.local, purge)


def set_account(root: Root, settings, address: str, **values) -> str:
    """Set account keys: password (a hash), name, enabled, quota_mb, the send_* limits;
    a value None removes the key (the default applies again)."""
    a = _address(root, settings, address)

    def change(doc):
        entry = _require(doc, "accounts", a)
        for k, v in values.items():
            if v is not None:
                entry[k] = v
            elif k in entry:
                del entry[k]
    _edit_domain(root, settings, a.domain, change)
    if "quota_mb" in values:
        from .maildir import Maildir
        box = Maildir.for_account(root, a.domain, a.local)
        if box.exists():
            box.set_quota(values["quota_mb"] * 1024 * 1024)
    return str(a)


def _targets(doc_domain: str, targets: list[str], settings) -> list[str]:
    if not targets:
        raise InvalidInput("give at least one target address")
    limit = settings.limits.max_forward_targets
    if len(targets) > limit:
        raise InvalidInput(f"{len(targets)} targets; at most {limit} allowed (limits.max_forward_targets)")
    out = []
    for t in targets:
        s = str(parse_target(t, doc_domain))
        if s not in out:
            out.append(s)
    return out


def _require_existing(directory: Directory, addresses: list[str], what: str) -> None:
    """Local addresses must exist: a typo would silently drop mail (remote ones are free)."""
    for a in addresses:
        if directory.is_local_domain(a.rpartition("@")[2]):
            r = directory.resolve(a, catch_all=False)
            if not r.ok:
                raise InvalidInput(f"{what} {a}: {r.rejection.text}")


def _targets_resolve(targets: list[str], settings):
    """A check: every local target must lead somewhere, and aliases-per-address limits hold."""
    def check(directory: Directory):
        _require_existing(directory, targets, "target")
        limit = settings.limits.max_aliases_per_address
        for t in targets:
            pointing = sum(1 for d in directory.domains.values() for al in d.alias_map.values() if t in al.targets)
            if pointing > limit:
                raise InvalidInput(f"{t} already has {limit} aliases pointing at it (limits.max_aliases_per_address)")
    return check


def _local_members_exist(members: list[str]):
    """A check: local list members must exist."""
    return lambda directory: _require_existing(directory, members, "member")


def set_forward(root: Root, settings, address: str, targets: list[str], keep_copy: bool) -> list[str]:
    a = _address(root, settings, address)
    resolved = _targets(a.domain, targets, settings)

    def change(doc):
        entry = _require(doc, "accounts", a)
        entry["forward"] = resolved
        entry["forward_keep_copy"] = keep_copy
    _edit_domain(root, settings, a.domain, change, _targets_resolve([t for t in resolved if t != str(a)], settings))
    return resolved


def clear_forward(root: Root, settings, address: str) -> None:
    a = _address(root, settings, address)

    def change(doc):
        entry = _require(doc, "accounts", a)
        for k in ("forward", "forward_keep_copy"):
            if k in entry:
                del entry[k]
    _edit_domain(root, settings, a.domain, change)


# -- aliases -----------------------------------------------------------------------

def add_alias(root: Root, settings, address: str, targets: list[str]) -> list[str]:
    """Create an alias, or add targets to an existing one."""
    a = _address(root, settings, address)
    resolved = _targets(a.domain, targets, settings)

    def change(doc):
        taken = _taken(doc, a.local)
        if taken and taken != "aliases":
            raise AlreadyExists(f"{a} already exists as {_KIND[taken]}")
        aliases = _table(doc, "aliases")
        if a.local in aliases:
            entry = aliases[a.local]
            for t in resolved:
                if t not in entry["targets"]:
                    entry["targets"].append(t)
            return list(entry["targets"])
        aliases[a.local] = {"targets": resolved, "enabled": True}
        return resolved
    return _edit_domain(root, settings, a.domain, change, _targets_resolve(resolved, settings))


def remove_alias(root: Root, settings, address: str, targets: list[str] | None = None) -> None:
    """Remove an alias, or only some of its targets."""
    a = _address(root, settings, address)

    def change(doc):
        entry = _require(doc, "aliases", a)
        if not targets:
            del doc["aliases"][a.local]
            return
        for t in _targets(a.domain, targets, settings):
            if t not in entry["targets"]:
                raise NotFound(f"{t} is not a target of {a}")
            entry["targets"].remove(t)
        if not entry["targets"]:
            del doc["aliases"][a.local]
    _edit_domain(root, settings, a.domain, change)


def set_alias_enabled(root: Root, settings, address: str, enabled: bool) -> None:
    a = _address(root, settings, address)

    def change(doc):
        _require(doc, "aliases", a)["enabled"] = enabled
    _edit_domain(root, settings, a.domain, change)


# -- lists -------------------------------------------------------------------------

def add_list(root: Root, settings, address: str, mode: str, sender: str = "",
             members: list[str] | None = None, require_auth: bool | None = None) -> str:
    """Create a list; require_auth None leaves the mode's default (on for announce)."""
    a = _address(root, settings, address)
    if mode not in LIST_MODES:
        raise InvalidInput(f"mode {mode!r}: use one of {', '.join(LIST_MODES)}")
    if mode == "announce" and not sender:
        raise InvalidInput("announce mode needs --sender ADDRESS (the one who may post)")
    sender = str(parse_target(sender, a.domain)) if sender else ""
    resolved = [str(parse_target(m, a.domain)) for m in members or []]

    def change(doc):
        taken = _taken(doc, a.local)
        if taken:
            raise AlreadyExists(f"{a} already exists as {_KIND[taken]}")
        entry = {"mode": mode, "sender": sender, "members": resolved, "enabled": True}
        if require_auth is not None:
            entry["require_auth"] = require_auth
        _table(doc, "lists")[a.local] = entry
    _edit_domain(root, settings, a.domain, change, _local_members_exist(resolved))
    return str(a)


def remove_list(root: Root, settings, address: str) -> None:
    a = _address(root, settings, address)

    def change(doc):
        _require(doc, "lists", a)
        del doc["lists"][a.local]
    _edit_domain(root, settings, a.domain, change)


def set_list(root: Root, settings, address: str, **values) -> None:
    a = _address(root, settings, address)
    if "mode" in values and values["mode"] not in LIST_MODES:
        raise InvalidInput(f"mode {values['mode']!r}: use one of {', '.join(LIST_MODES)}")
    if values.get("sender"):
        values["sender"] = str(parse_target(values["sender"], a.domain))

    def change(doc):
        entry = _require(doc, "lists", a)
        for k, v in values.items():
            entry[k] = v
    _edit_domain(root, settings, a.domain, change)


def change_list_members(root: Root, settings, address: str, add: list[str] = (), remove: list[str] = ()) -> list[str]:
    a = _address(root, settings, address)
    adding = [str(parse_target(m, a.domain)) for m in add]
    removing = [str(parse_target(m, a.domain)) for m in remove]

    def change(doc):
        entry = _require(doc, "lists", a)
        members = entry.setdefault("members", [])
        for m in removing:
            if m not in members:
                raise NotFound(f"{m} is not a member of {a}")
            members.remove(m)
        for m in adding:
            if m not in members:
                members.append(m)
        return list(members)
    return _edit_domain(root, settings, a.domain, change, _local_members_exist(adding))
