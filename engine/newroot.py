"""A new mail root: its layout, a commented mailctl.toml, a self-signed certificate, and
(run as root) the system user it is handed to."""
from __future__ import annotations

import datetime
import ipaddress
import os

from . import privileges, settings as settings_mod, srs_secret
from .errors import AlreadyExists
from .root import TOML_MODE, Root, atomic_write


def wants_high_ports() -> bool:
    """Unprivileged users cannot bind ports below 1024."""
    return hasattr(os, "geteuid") and os.geteuid() != 0


def init_root(root: Root, hostname: str = "localhost", high_ports: bool = False,
              values: dict | None = None) -> list[str]:
    """Create a new root (values: settings to write, 'section.key': value). Returns the
    notes to show the user."""
    if root.exists():
        raise AlreadyExists(f"{root.path}: already a mail root (mailctl.toml exists)")
    notes = []
    root.make_layout()
    values = {"server.hostname": hostname, **(values or {})}
    if high_ports:
        for name, port in settings_mod.HIGH_PORTS.items():
            values[f"listeners.{name}.port"] = port
        notes.append("unprivileged ports written (SMTP 2525, submission 2587, submissions 2465, "
                     "IMAP 2143/2993, POP3 2110/2995, ManageSieve 24190)")
    make_self_signed(root, hostname)
    notes.append(f"self-signed certificate for {hostname} written to tls/")
    srs_secret.ensure(root)               # SRS addresses of forwarded mail (engine/srs_forward.py)
    from .sieve import outofoffice        # the autoreply text `mailctl autoreply set` starts from
    outofoffice.write_template(root)
    atomic_write(root.config_file, settings_mod.render_sample(values), mode=TOML_MODE)
    return notes


def make_self_signed(root: Root, hostname: str, days: int = 825) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname == "localhost":
        alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(key, hashes.SHA256()))
    root.tls_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(root.tls_dir / "key.pem", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), mode=0o600)
    atomic_write(root.tls_dir / "cert.pem", cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def give_to_serving_user(root: Root) -> list[str]:
    """Run as root: create the system user server.user if it does not exist and give it
    the root (0600/0700), since the serving processes run as that user. Returns notes."""
    if os.geteuid() != 0:
        return []
    name = settings_mod.load(root.config_file, "mailctl.toml").server.user
    if name == "root":
        return ["server.user is root: the serving processes will run as root"]
    account = privileges.ensure_system_user(name)
    privileges.give_root(root.path, account)
    notes = [f"the root belongs to the system user {name}, which the serving processes run as"]
    closed = privileges.unreachable_parent(root.path, account)
    if closed is not None:
        notes.append(f"warning: {closed} is closed to {name}: open it (chmod o+x) or move the root "
                     f"before 'mailctl serve'")
    return notes
