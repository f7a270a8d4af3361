"""Moving a whole installation to another machine or path, and the DNS it needs.

export: a full backup archive (settings, domains with password hashes, mail, DKIM
keys, TLS, state, queue), made while the server runs.
import: restored into a fresh root, then checked against the bundle's manifest:
every file's checksum and the message count of every account and folder.
check: the DNS records the domains need (MX, A/AAAA, SPF, DKIM, DMARC, PTR) and,
with a resolver, whether live DNS has them.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from .backup import create_backup, destination, restore_backup
from .backup.create import account_key, folder_display
from .backup.progress import SILENT, Progress
from .errors import AlreadyExists, InvalidInput
from .root import Root


def export_bundle(root: Root, bundle: str | os.PathLike, progress: Progress = SILENT):
    bundle = Path(bundle).absolute()
    if not destination.is_archive_path(bundle):
        raise InvalidInput(f"{bundle}: a bundle is a .tar.gz file; give a name ending in .tar.gz")
    if bundle.exists():
        raise AlreadyExists(f"{bundle} already exists; choose another name")
    return create_backup(root, bundle, progress=progress)


@dataclass
class ImportReport:
    root: Path
    files: int = 0
    messages: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (f"migrated into {self.root}: {self.files} files and {self.messages} messages match "
                    f"the bundle's manifest")
        return f"migrated into {self.root} with {len(self.problems)} problems: {self.problems[0]}"


def import_bundle(bundle: str | os.PathLike, target: Root, progress: Progress = SILENT) -> ImportReport:
    bundle = Path(bundle).absolute()
    if target.exists() or (target.path.exists() and any(target.path.iterdir())):
        raise AlreadyExists(f"{target.path} is not empty; migrate into a new directory (--root NEW)")
    ref = destination.open_ref(bundle)
    restore_backup(bundle, target, progress=progress)
    return check_against(target, ref.manifest, progress)


def check_against(root: Root, manifest, progress: Progress = SILENT) -> ImportReport:
    report = ImportReport(root.path)
    progress.start("checking", len(manifest.files))
    for rel, e in sorted(manifest.files.items()):
        p = root.path / rel
        try:
            with open(p, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except FileNotFoundError:
            report.problems.append(f"missing {rel}")
            continue
        if digest != e.sha256:
            report.problems.append(f"checksum differs: {rel}")
        report.files += 1
        progress.advance(1)
    counts: dict[str, dict[str, int]] = {}
    for dirpath, _, files in os.walk(root.mail_dir):
        rel_dir = os.path.relpath(dirpath, root.path)
        if rel_dir.count("/") >= 3 and os.path.basename(dirpath) in ("cur", "new"):
            folder = os.path.dirname(rel_dir)
            key = account_key(folder)
            if key:
                counts.setdefault(key, {}).setdefault(folder_display(folder), 0)
                counts[key][folder_display(folder)] += len(files)
    for acct, folders in manifest.counts.items():
        for folder, n in folders.items():
            got = counts.get(acct, {}).get(folder, 0)
            report.messages += min(got, n)
            if got != n:
                report.problems.append(f"{acct} {folder}: {got} messages, the bundle has {n}")
    return report


# -- DNS ---------------------------------------------------------------------

@dataclass
class Record:
    domain: str
    type: str
    name: str
    value: str
    status: str = "not checked"      # ok | missing | differs | not checked
    found: list[str] = field(default_factory=list)
    note: str = ""

    def public(self) -> dict:
        return {"domain": self.domain, "type": self.type, "name": self.name, "value": self.value,
                "status": self.status, "found": self.found, "note": self.note}


def needed_records(root: Root, settings, ips: list[str]) -> list[Record]:
    from .directory import Directory
    host = settings.server.hostname.rstrip(".").lower()
    directory = Directory.load(root, settings, strict=False)
    domains = sorted(directory.domains)
    out: list[Record] = []
    for ip in ips:
        a = ipaddress.ip_address(ip)
        out.append(Record(host, "AAAA" if a.version == 6 else "A", host, str(a)))
        out.append(Record(host, "PTR", a.reverse_pointer, host + "."))
    if not ips:
        out.append(Record(host, "A", host, "<this server's public IPv4 address>", note="give --ip to check it"))
    for d in domains:
        out.append(Record(d, "MX", d, f"10 {host}."))
        out.append(Record(d, "TXT", d, "v=spf1 mx -all", note="SPF"))
        for key_name, value, note in _dkim_records(root, d):
            out.append(Record(d, "TXT", key_name, value, note=note))
        out.append(Record(d, "TXT", f"_dmarc.{d}", f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{d}", note="DMARC"))
    return out


def _dkim_records(root: Root, domain: str) -> list[tuple[str, str, str]]:
    try:
        from .outbound import dkim
    except ImportError:
        return []
    out = []
    for path in sorted(root.dkim_dir.glob(f"{domain}.*.key")):
        try:
            key = dkim._load(path)
        except Exception as e:            # an unreadable key is reported, not fatal
            out.append((f"{path.name[:-4].rpartition('.')[2]}._domainkey.{domain}", "<unreadable key>",
                        f"DKIM key dkim/{path.name} cannot be read: {e}"))
            continue
        if key.domain == domain:
            out.append((key.record_name, key.record, f"DKIM (dkim/{path.name})"))
    return out


def make_resolver(spec: str | None):
    import dns.resolver
    if not spec:
        return dns.resolver.Resolver()
    import dns.nameserver
    host, port = spec, 53
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif spec.count(":") == 1:
        host, _, p = spec.partition(":")
        port = int(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InvalidInput(f"--resolver {spec}: give an IP address, optionally with :port") from None
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [dns.nameserver.Do53Nameserver(host, port)]
    r.lifetime = 5
    return r


def check_records(records: list[Record], resolver) -> None:
    import dns.exception
    import dns.resolver
    for rec in records:
        rdtype = rec.type
        try:
            answer = resolver.resolve(rec.name, rdtype, raise_on_no_answer=False)
            found = [_text(r, rdtype) for r in answer] if answer.rrset is not None else []
        except dns.resolver.NXDOMAIN:
            found = []
        except (dns.exception.DNSException, OSError) as e:
            rec.status, rec.note = "error", f"lookup failed: {e.__class__.__name__}"
            continue
        rec.found = found
        rec.status = _judge(rec, found)


def _text(r, rdtype: str) -> str:
    if rdtype == "TXT":
        return b"".join(r.strings).decode("utf-8", "replace")
    if rdtype == "MX":
        return f"{r.preference} {r.exchange.to_text().lower()}"
    return r.to_text().lower()


def _judge(rec: Record, found: list[str]) -> str:
    if not found:
        return "missing"
    if rec.value.startswith("<"):
        return "ok"
    if rec.type == "MX":
        want = rec.value.split()[1].lower()
        return "ok" if any(f.split()[1] == want for f in found) else "differs"
    if rec.type == "TXT" and rec.note == "SPF":
        spf = [f for f in found if f.lower().startswith("v=spf1")]
        return "ok" if spf else "missing"
    if rec.type == "TXT" and rec.note == "DMARC":
        return "ok" if any(f.upper().startswith("V=DMARC1") for f in found) else "missing"
    if rec.type == "TXT" and rec.note.startswith("DKIM"):
        want = rec.value.rpartition("p=")[2].strip()
        have = [f.replace(" ", "").rpartition("p=")[2] for f in found]
        return "ok" if want and want in have else "differs"
    norm = {f.rstrip(".").lower() for f in found}
    return "ok" if rec.value.rstrip(".").lower() in norm else "differs"
