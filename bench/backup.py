"""Backup and restore throughput of a generated root, beside tar in the same run.

    python bench/backup.py [--messages 20000] [--accounts 50] [--size 2000]

Prints MB/s for: backup create (directory snapshot, hard links), backup create
--archive (tar.gz), restore from each, and `tar -czf` / `tar -xzf` of the same tree;
the ratio column is ours / tar's time (below 1 = faster than tar)."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from engine.backup import create_backup, restore_backup   # noqa: E402 - after sys.path is set
from engine.root import Root                                # noqa: E402 - after sys.path is set
from helpers_backup import make_root                        # noqa: E402 - after sys.path is set


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def drop(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--accounts", type=int, default=50)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    try:
        t = time.perf_counter()
        root = make_root(work / "root", domains=3, accounts=args.accounts, messages=args.messages)
        size = tree_bytes(root.path)
        print(f"root: {args.messages} messages, {args.accounts} accounts, {size / 1e6:.1f} MB "
              f"(generated in {time.perf_counter() - t:.1f}s)")
        os.sync()
        res = {}
        holder = {}
        res["backup create (dir, hard links)"] = timed(lambda: holder.update(d=create_backup(root, work / "bk")))
        res["backup create --archive"] = timed(lambda: holder.update(a=create_backup(root, work / "bk", archive=True)))
        res["tar -czf"] = timed(lambda: subprocess.run(["tar", "-C", str(work), "-czf", str(work / "plain.tar.gz"),
                                                        "root"], check=True))
        res["restore from dir"] = timed(lambda: restore_backup(holder["d"].path, Root(work / "r1")))
        drop(work / "r1")
        res["restore from archive"] = timed(lambda: restore_backup(holder["a"].path, Root(work / "r2")))
        drop(work / "r2")
        (work / "x").mkdir()
        res["tar -xzf"] = timed(lambda: subprocess.run(["tar", "-C", str(work / "x"), "-xzf",
                                                        str(work / "plain.tar.gz")], check=True))
        archive_size = holder["a"].path.stat().st_size
        print(f"archive: {archive_size / 1e6:.1f} MB (tar -czf: {(work / 'plain.tar.gz').stat().st_size / 1e6:.1f} MB)")
        print(f"{'operation':36} {'seconds':>8} {'MB/s':>8} {'vs tar':>7}")
        for name, secs in res.items():
            ref = res["tar -czf"] if "create" in name else res["tar -xzf"] if "restore" in name else secs
            print(f"{name:36} {secs:8.2f} {size / 1e6 / secs:8.1f} {secs / ref:7.2f}")
        print("(create includes checksumming every file and a full verification pass; "
              "restore from a backup verifies it first)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
