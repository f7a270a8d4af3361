"""Mail addresses and domain names: parse, validate, normalise.

Nothing from the network becomes a path unchecked (DESIGN.md §3.4): an address that
passes `parse_address` has a local part that is a safe single path component and a
domain that is a lower-case ASCII (IDNA) host name.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from .errors import InvalidInput

MAX_LOCAL = 64        # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 253
MAX_LABEL = 63

# RFC 5322 atext, minus "/" (it would be a path separator in the Maildir tree).
_ATEXT = r"[A-Za-z0-9!#$%&'*+=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
# A sender's local part may hold "/" too (postsrsd's and our own SRS hashes are base64):
# senders and the addresses SRS gives back are never made into paths.
_SENDER_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
SENDER_LOCAL = re.compile(rf"{_SENDER_ATEXT}+(?:\.{_SENDER_ATEXT}+)*\Z")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


class Address(NamedTuple):
    local: str      # lower-cased
    domain: str     # lower-case ASCII, IDNA-encoded

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"


def _show(text: str) -> str:
    """Quote user input for an error message without control characters."""
    return repr(text[:80] + ("…" if len(text) > 80 else ""))


def normalize_domain(name: str) -> str:
    """Validate a domain name and return it in lower-case ASCII (punycode for IDN)."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("domain name is empty; give a name like example.com")
    shown = _show(name)
    if any(ord(c) < 33 or c == "\x7f" for c in name):
        raise InvalidInput(f"domain {shown}: contains spaces or control characters")
    if name.startswith("[") or name.endswith("."):
        raise InvalidInput(f"domain {shown}: IP literals and trailing dots are not accepted; "
                           f"give a name like example.com")
    try:
        ascii_name = name.encode("idna").decode("ascii").lower() if not name.isascii() else name.lower()
    except UnicodeError:
        raise InvalidInput(f"domain {shown}: not a valid internationalised domain name") from None
    if len(ascii_name) > MAX_DOMAIN:
        raise InvalidInput(f"domain {shown}: longer than {MAX_DOMAIN} characters")
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise InvalidInput(f"domain {shown}: must contain a dot, like example.com")
    for label in labels:
        if not _LABEL.match(label):
            raise InvalidInput(f"domain {shown}: label {label!r} must be letters, digits and inner "
                               f"hyphens, 1 to {MAX_LABEL} characters")
    if labels[-1].isdigit():
        raise InvalidInput(f"domain {shown}: the last label cannot be numeric (IP addresses are not domains)")
    return ascii_name


def check_local(local: str, what: str = "local part", sender: bool = False) -> str:
    """Validate a local part (dot-atom, no '/' unless a sender's) and return it lower-cased."""
    shown = _show(local)
    if not local:
        raise InvalidInput(f"{what} is empty")
    if len(local) > MAX_LOCAL:
        raise InvalidInput(f"{what} {_show(local)}: longer than {MAX_LOCAL} characters")
    if not (SENDER_LOCAL if sender else _DOT_ATOM).match(local):
        allowed = "!#$%&'*+/=?^_`{|}~-" if sender else "!#$%&'*+=?^_`{|}~-"
        raise InvalidInput(f"{what} {shown}: only letters, digits and {allowed} "
                           f"with single inner dots are allowed")
    return local.lower()


def parse_address(text: str) -> Address:
    """Parse 'local@domain' strictly. Raises InvalidInput with a one-line reason."""
    return _parse(text, sender=False)


def parse_sender(text: str) -> Address:
    """A reverse path (MAIL FROM, an address SRS gives back): as parse_address, but its
    local part may hold '/'. Never use it for anything that names a mailbox."""
    return _parse(text, sender=True)


def _parse(text: str, sender: bool) -> Address:
    if not isinstance(text, str):
        raise InvalidInput("address must be text")
    shown = _show(text)
    if "\x00" in text:
        raise InvalidInput(f"address {shown}: contains a NUL byte")
    if text.count("@") != 1:
        raise InvalidInput(f"address {shown}: must be local@domain with exactly one @")
    local, domain = text.split("@")
    try:
        return Address(check_local(local, sender=sender), normalize_domain(domain))
    except InvalidInput as e:
        raise InvalidInput(f"address {shown}: {e}") from None


def parse_target(text: str, default_domain: str) -> Address:
    """An alias/forward/list target: a full address, or a bare local part in default_domain."""
    if isinstance(text, str) and "@" not in text:
        return Address(check_local(text, f"target {_show(text)}"), default_domain)
    return parse_address(text)
