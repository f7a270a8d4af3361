"""Shared fixtures: a fresh mail root, and the CLI run in-process or as a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import settings as settings_mod
from engine.root import Root
from engine.setup import init_root

PASSWORD = "secret-pass-1"


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(root: Root | Path | str | None, *args: str, input: str | bytes | None = None) -> Result:
    """Run mailctl in-process through its real entry point (error handling included)."""
    from mailctl.cli import main
    argv = (["--root", str(root.path if isinstance(root, Root) else root)] if root is not None else []) + list(args)
    runner = CliRunner()
    with runner.isolation(input=input) as streams:
        code = main(argv)
        out, err = streams[0].getvalue(), streams[1].getvalue()
    return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))


def run_mailctl(root, *args: str | bytes, input: bytes | str | None = None, timeout: float = 60,
                cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run mailctl as a real subprocess (its own stdin/stdout, no terminal). Arguments may
    be bytes (argv that is not UTF-8); cwd and env (added to os.environ) are optional."""
    cmd = [sys.executable, "-m", "mailctl", "--root", str(root.path if isinstance(root, Root) else root), *args]
    if isinstance(input, str):
        input = input.encode()
    if cwd is not None or env is not None:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **(env or {})}
    return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, cwd=cwd, env=env)


@pytest.fixture
def root(tmp_path) -> Root:
    r = Root(tmp_path / "mailroot")
    init_root(r, hostname="mail.example.com", high_ports=True)
    return r


@pytest.fixture
def settings(root):
    return settings_mod.load(root.config_file)


@pytest.fixture
def cli(root):
    """cli('account', 'list') -> Result, against the fixture root."""
    def call(*args, input=None):
        return run_cli(root, *args, input=input)
    return call


def tree_snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under path with its content, to prove a failed command changed nothing."""
    out = {}
    for p in sorted(Path(path).rglob("*")):
        if p.is_file() and "run/locks" not in str(p):
            out[str(p.relative_to(path))] = p.read_bytes()
    return out
