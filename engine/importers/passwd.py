"""Accounts from a Dovecot passwd-file (user:{SCHEME}hash:uid:gid:gecos:home:shell:extra),
hashes kept as they are so users keep their passwords (engine/passwords.py verifies
{SCHEME} hashes; they are replaced by argon2id when a password is next set)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import directory_edit, passwords
from ..addresses import normalize_domain, parse_address
from ..directory import Directory
from ..errors import AlreadyExists, InvalidInput, MailError, NotFound
from ..root import Root


@dataclass
class PasswdCounts:
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self, what: str) -> str:
        return f"{what}: {self.imported} accounts imported, {self.skipped} skipped (already there), {self.failed} failed"


def import_passwd_file(root: Root, settings, path: str | os.PathLike, domain: str) -> PasswdCounts:
    domain = normalize_domain(domain)
    if not root.domain_file(domain).exists():
        raise NotFound(f"domain {domain} does not exist; add it with 'mailctl domain add {domain}' first")
    try:
        text = open(path, "rb").read().decode("utf-8", "replace")
    except OSError as e:
        raise MailError(f"{path}: cannot read passwd-file: {e.strerror}") from None
    counts = PasswdCounts()
    directory = Directory.load(root, settings, strict=False)
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":")
        user = fields[0].strip()
        hashed = fields[1].strip() if len(fields) > 1 else ""
        gecos = fields[4].strip() if len(fields) > 4 else ""
        where = f"{path}:{lineno}"
        try:
            address = user if "@" in user else f"{user}@{domain}"
            a = parse_address(address)
            if a.domain != domain:
                raise InvalidInput(f"{a} is not in domain {domain}")
            if hashed.startswith(("$1$", "$5$", "$6$", "$2a$", "$2b$", "$2y$", "$y$")):
                hashed = "{CRYPT}" + hashed          # Dovecot's default_pass_scheme CRYPT
            if not hashed or not passwords.is_hash(hashed):
                raise InvalidInput(f"{a}: no {{SCHEME}} password hash (plain passwords are not imported)")
            if directory.account(str(a)) is not None:
                counts.skipped += 1
                continue
            directory_edit.add_account(root, settings, str(a), hashed, gecos.split(",")[0])
            counts.imported += 1
        except AlreadyExists:
            counts.skipped += 1
        except MailError as e:
            counts.failed += 1
            counts.problems.append(f"{where}: {e}")
    return counts
