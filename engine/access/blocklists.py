"""The sender and recipient block lists: access.block_senders / block_recipients of
mailctl.toml and the 'sender' / 'recipient' entries of `mailctl access add` (state/)."""
from __future__ import annotations

from .patterns import matches, parse_pattern

_parsed: dict[str, tuple] = {}       # setting name -> (its list, canonical patterns), per load


def _static(settings, name: str) -> list[str]:
    items = getattr(settings.access, name)
    cached = _parsed.get(name)
    if cached is None or cached[0] is not items:
        cached = (items, [parse_pattern(p) for p in items])
        _parsed[name] = cached
    return cached[1]


def with_base(addresses, delimiter: str) -> list[str]:
    """The addresses and, with plus addressing (relay.recipient_delimiter), each one's base
    address too: a block of sales@ also holds sales+anything@."""
    out = [a for a in addresses if a]
    if delimiter:
        for a in list(out):
            local, at, domain = a.rpartition("@")
            if at and delimiter in local:
                out.append(f"{local.split(delimiter, 1)[0]}{at}{domain}")
    return out


def blocked(settings, entries, kind: str, addresses) -> str | None:
    """The first pattern of the block list of `kind` ('sender' or 'recipient') matching
    one of the addresses, or None. `entries` is the server's AccessEntries."""
    patterns = _static(settings, f"block_{kind}s") + [e.value for e in entries.active((kind,))]
    if not patterns:
        return None
    for address in addresses:
        if address:
            hit = next((p for p in patterns if matches(p, address)), None)
            if hit is not None:
                return hit
    return None
