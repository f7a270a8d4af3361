"""Keeping the newest N chains (a full backup and the incrementals built on it)."""
from __future__ import annotations

from pathlib import Path

from . import destination


def chains(dest: Path) -> list[list[destination.BackupRef]]:
    """Chains in dest, oldest first; an incremental whose parent is gone forms no chain of its own."""
    refs, _ = destination.list_backups(dest)
    by_name = {r.name: r for r in refs}
    out: dict[str, list[destination.BackupRef]] = {}
    for r in refs:
        head = r
        seen = set()
        while head.manifest.parent and head.manifest.parent in by_name and head.name not in seen:
            seen.add(head.name)
            head = by_name[head.manifest.parent]
        out.setdefault(head.name, []).append(r)
    return sorted(out.values(), key=lambda c: c[0].created)


def prune(dest: Path, keep: int, dry_run: bool = False) -> list[str]:
    """Remove all but the newest `keep` chains. Returns the names removed."""
    if keep < 1:
        from ..errors import InvalidInput
        raise InvalidInput("--keep must be at least 1; removing every backup is not what prune is for")
    all_chains = chains(dest)
    doomed = [r for chain in all_chains[:-keep] for r in reversed(chain)] if len(all_chains) > keep else []
    for r in doomed:
        if not dry_run:
            destination.remove_backup(r)
    return [r.name for r in doomed]
