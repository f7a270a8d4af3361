"""Shared fixtures: a fresh mail root, and the CLI run in-process or as a subprocess."""
from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import settings as settings_mod
from engine.root import Root
from engine.newroot import init_root

PASSWORD = "secret-pass-1"

# mailctl's tables are as wide as COLUMNS says when stdout is no terminal; pytest-xdist's
# workers set 80, a developer's shell anything: the tests see what a pipe gets by default.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)
# In a pytest-xdist worker (scripts/test-all.sh), other test processes run beside this one.
IN_A_WORKER = "PYTEST_XDIST_WORKER" in os.environ


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


@pytest.fixture
def open_tmp_path():
    """A temp directory other users can traverse (pytest's own sit under a 0700 folder):
    for roots that a mail user or another local user must reach, as a real /srv root."""
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="mailctl-open-"))
    os.chmod(d, 0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def reachable_by(user):
    """Let an unprivileged user reach Python and this checkout (either may sit under a
    folder closed to others, such as /root): o+x on the closed folders above them, taken
    back at the end."""
    from engine import privileges
    opened = []
    try:
        for path in (Path(sys.executable).resolve(), Path(__file__).resolve().parent.parent):
            while (folder := privileges.unreachable_parent(path / "x", user)) is not None:
                mode = os.stat(folder).st_mode
                os.chmod(folder, mode | 0o001)
                opened.append((folder, mode))
        yield user
    finally:
        if not IN_A_WORKER:             # another worker's user may still be passing through them
            for folder, mode in reversed(opened):
                os.chmod(folder, stat.S_IMODE(mode))


@pytest.fixture(scope="session", autouse=True)
def shared_temp_reachable(tmp_path_factory):
    """As root, the folders above every test's tmp_path let others pass (o+x, no listing):
    the test's own folder, opened and closed again by a test whose Dovecot or mail user
    needs it (tests/dovecot.py), is then the only one that changes, so two workers never
    close a folder under each other. pytest closes its base again at its next run."""
    if os.geteuid() == 0:
        for folder in tmp_path_factory.getbasetemp().parents:
            mode = stat.S_IMODE(os.stat(folder).st_mode)
            if not mode & 0o001:
                os.chmod(folder, mode | 0o001)
    yield


@pytest.fixture(scope="module")
def default_mail_user():
    """The system user `mailctl init` as root gives a root to (server.user's default),
    able to run mailctl here."""
    if os.geteuid() != 0:
        pytest.skip("needs root (CI runs as root)")
    from engine import privileges, settings as settings_mod
    user = privileges.ensure_system_user(settings_mod.defaults()["server"]["user"])
    with reachable_by(user):
        yield user
