"""DKIM signing (RFC 6376, RFC 8463) with dkimpy, for mail whose From domain is local.

Keys live in dkim/<domain>.<selector>.key: RSA as PEM, Ed25519 as the base64 32-byte
seed (the form dkimpy reads). Signing happens at send time, in the queue runner: the
queued body stays as received, keys added, replaced or removed under dkim/ take effect
for the very next attempt without a restart, and mail queued by any path (SMTP, pickup,
sendmail, forwards) is signed the same way. When a domain has several keys, the most
recently written one signs. Canonicalization relaxed/relaxed.
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path

from ..addresses import normalize_domain
from ..errors import AlreadyExists, InvalidInput, MailError, NotFound
from ..root import atomic_write

ALGORITHMS = ("rsa2048", "ed25519")
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62})$")


class SigningUnavailable(MailError):
    """Signing is configured for the message's domain (it has a key) but cannot happen
    here: a module is missing, or the key cannot be read. The message waits for the admin
    to fix it rather than leave unsigned."""


@dataclass
class Key:
    domain: str
    selector: str
    algorithm: str          # rsa2048 (or rsa<bits>) / ed25519
    path: Path
    private: bytes
    public_b64: str

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record(self) -> str:
        k = "ed25519" if self.algorithm == "ed25519" else "rsa"
        return f"v=DKIM1; k={k}; p={self.public_b64}"

    def zone_line(self) -> str:
        value = self.record
        parts = [value[i:i + 255] for i in range(0, len(value), 255)]
        return f'{self.record_name}. IN TXT ' + " ".join(f'"{p}"' for p in parts)

    def public(self) -> dict:
        return {"domain": self.domain, "selector": self.selector, "algorithm": self.algorithm,
                "file": f"dkim/{self.path.name}", "record_name": self.record_name, "record": self.record}


def check_selector(selector: str) -> str:
    s = selector.lower()
    if not _SELECTOR.match(s):
        raise InvalidInput(f"{selector!r} is not a valid selector (letters, digits and '-', up to 63)")
    return s


def _load(path: Path) -> Key:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    stem = path.name[:-4]
    domain, _, selector = stem.rpartition(".")
    raw = path.read_bytes()
    if raw.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_private_key(raw, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise InvalidInput(f"{path.name}: only RSA keys are accepted in PEM form")
        pub = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        return Key(domain, selector, f"rsa{key.key_size}", path, raw, base64.b64encode(pub).decode())
    seed = base64.b64decode(raw.strip(), validate=True)
    if len(seed) != 32:
        raise InvalidInput(f"{path.name}: not a PEM RSA key or a base64 Ed25519 seed")
    priv = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    pub = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Key(domain, selector, "ed25519", path, raw.strip(), base64.b64encode(pub).decode())


def keys(root, domain: str) -> list[Key]:
    """The keys of domain, newest first."""
    domain = normalize_domain(domain)
    out = []
    try:
        entries = sorted(root.dkim_dir.glob(f"{domain}.*.key"), key=lambda p: p.stat().st_mtime, reverse=True)
    except FileNotFoundError:
        return []
    for p in entries:
        if p.name[:-4].rpartition(".")[0] != domain:
            continue
        out.append(_cached(p))
    return out


_CACHE: dict[Path, tuple[int, Key]] = {}


def _cached(path: Path) -> Key:
    mtime = path.stat().st_mtime_ns
    hit = _CACHE.get(path)
    if hit and hit[0] == mtime:
        return hit[1]
    key = _load(path)
    _CACHE[path] = (mtime, key)
    return key


def keygen(root, domain: str, selector: str = "mailctl", algorithm: str = "rsa2048",
           force: bool = False) -> Key:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    domain = normalize_domain(domain)
    selector = check_selector(selector)
    if algorithm not in ALGORITHMS:
        raise InvalidInput(f"algorithm must be one of {', '.join(ALGORITHMS)}")
    path = root.dkim_dir / f"{domain}.{selector}.key"
    if path.exists() and not force:
        raise AlreadyExists(f"dkim/{path.name} exists; choose another --selector (for a key rollover) "
                            f"or pass --force to replace it")
    if algorithm == "ed25519":
        priv = ed25519.Ed25519PrivateKey.generate()
        seed = priv.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                  serialization.NoEncryption())
        data = base64.b64encode(seed) + b"\n"
    else:
        priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        data = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption())
    root.dkim_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, mode=0o600)
    return _cached(path)


def show(root, domain: str) -> list[Key]:
    found = keys(root, domain)
    if not found:
        raise NotFound(f"no DKIM key for {normalize_domain(domain)}; create one with 'mailctl dkim keygen {domain}'")
    return found


def from_domain(data: bytes) -> str | None:
    """The domain of the (first) From header address."""
    end = data.find(b"\r\n\r\n")
    if end == -1:
        end = data.find(b"\n\n")
    head = data[: end if end != -1 else len(data)].decode("utf-8", "replace").replace("\r\n", "\n")
    values = []
    current = None
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and current is not None:
            values[-1] += " " + line.strip()
        elif line.lower().startswith("from:"):
            values.append(line[5:].strip())
            current = True
        else:
            current = None
    addrs = [a for _, a in getaddresses(values) if "@" in a]
    if not addrs:
        return None
    try:
        return normalize_domain(addrs[0].rpartition("@")[2])
    except (InvalidInput, ValueError):
        return None


def sign(data: bytes, key: Key) -> bytes:
    """Prepend a DKIM-Signature for key to data (CRLF or LF line ends kept)."""
    import dkim
    crlf = b"\r\n" in data[:2000]
    msg = data if crlf else data.replace(b"\n", b"\r\n")
    algo = b"ed25519-sha256" if key.algorithm == "ed25519" else b"rsa-sha256"
    sig = dkim.sign(msg, key.selector.encode(), key.domain.encode(), key.private,
                    canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=algo, linesep=b"\r\n")
    if not crlf:
        sig = sig.replace(b"\r\n", b"\n")
    return sig + data


def sign_outbound(root, settings, directory, data: bytes) -> bytes:
    """Sign when dkim.enabled, the From domain is local and has a key; else unchanged.
    Raises SigningUnavailable when it has a key but a module or the key is missing."""
    if not settings.dkim.enabled:
        return data
    domain = from_domain(data)
    if not domain or not directory.is_local_domain(domain):
        return data
    try:
        found = keys(root, domain)
    except ImportError as e:             # cryptography, to read the key
        raise SigningUnavailable(f"{domain} has a DKIM key but the {e.name or e} module is missing") from e
    except (OSError, ValueError, InvalidInput) as e:
        # the reason is kept in the queue and may reach the sender: the error, not its path
        why = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise SigningUnavailable(f"a DKIM key of {domain} under dkim/ cannot be read: {why}") from e
    if not found:
        return data
    try:
        import dkim
    except ImportError as e:
        raise SigningUnavailable(f"{domain} has a DKIM key but the dkim (dkimpy) module is missing") from e
    try:
        return sign(data, found[0])
    except dkim.KeyFormatError as e:
        raise SigningUnavailable(f"dkim/{found[0].path.name} cannot sign: {e}") from e
