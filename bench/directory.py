#!/usr/bin/env python3
"""Directory speed: `mailctl account list --json` with 10,000 accounts over 100 domains,
and resolving 100,000 addresses. Aims: listing under 0.5 s, over 50,000 resolutions/s.

    python bench/directory.py [--accounts-per-domain 100] [--domains 100]
"""
from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tomli_w  # noqa: E402 - after sys.path is set

from engine import settings as settings_mod  # noqa: E402 - after sys.path is set
from engine.directory import Directory  # noqa: E402 - after sys.path is set
from engine.passwords import hash_password  # noqa: E402 - after sys.path is set
from engine.root import Root  # noqa: E402 - after sys.path is set
from engine.newroot import init_root  # noqa: E402 - after sys.path is set


def build(root: Root, domains: int, per_domain: int) -> list[str]:
    """Write the domain files directly (one hash reused: hashing 10,000 passwords is not what we measure)."""
    pw = hash_password("bench-password-1")
    addresses = []
    for d in range(domains):
        name = f"d{d:03d}.example"
        accounts = {f"user{i:04d}": {"password": pw, "name": f"User {i}", "quota_mb": 0, "enabled": True}
                    for i in range(per_domain)}
        aliases = {f"alias{i:03d}": {"targets": [f"user{i:04d}"], "enabled": True} for i in range(0, per_domain, 10)}
        (root.domains_dir / f"{name}.toml").write_text(tomli_w.dumps(
            {"enabled": True, "domain_aliases": [], "catch_all": "", "accounts": accounts, "aliases": aliases}))
        addresses += [f"user{i:04d}@{name}" for i in range(per_domain)]
        addresses += [f"alias{i:03d}@{name}" for i in range(0, per_domain, 10)]
        addresses += [f"nobody{i}@{name}" for i in range(5)]
    return addresses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--domains", type=int, default=100)
    ap.add_argument("--accounts-per-domain", type=int, default=100)
    ap.add_argument("--resolutions", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Root(Path(tmp) / "root")
        init_root(root, high_ports=True)
        addresses = build(root, args.domains, args.accounts_per_domain)
        total = args.domains * args.accounts_per_domain

        times = []
        for _ in range(3):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "mailctl", "--root", str(root.path), "account", "list", "--json"],
                                 capture_output=True, check=True).stdout
            times.append(time.perf_counter() - t)
        assert out.count(b'"address"') == total
        listing = statistics.median(times)

        settings = settings_mod.load(root.config_file)
        t = time.perf_counter()
        directory = Directory.load(root, settings)
        load_time = time.perf_counter() - t
        sample = [random.choice(addresses) for _ in range(args.resolutions)]
        t = time.perf_counter()
        for a in sample:
            directory.resolve(a)
        rate = args.resolutions / (time.perf_counter() - t)

    print(f"accounts: {total} over {args.domains} domains")
    print(f"mailctl account list --json: {listing:.3f} s (median of 3, whole process; aim < 0.5 s)")
    print(f"Directory.load: {load_time:.3f} s")
    print(f"resolve: {rate:,.0f} addresses/s over {args.resolutions:,} (aim > 50,000/s)")


if __name__ == "__main__":
    main()
