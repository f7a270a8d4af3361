"""Every mailctl command (found by walking the click app) run as a real subprocess with
hostile arguments: bytes that are not UTF-8, 5,000 characters, '../', control characters,
a directory where a file is expected, a missing root. Each run must end with exit 0, 1
or 2, no traceback, a few lines at most on stderr, and nothing written outside its root
and its working directory. Seeded and bounded (a sample of arguments per command)."""
from __future__ import annotations

import os
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import pytest

from conftest import run_mailctl
from helpers_server import make_root

SEED = int(os.environ.get("MAILCTL_FUZZ_SEED", "19"))
SAMPLES = int(os.environ.get("MAILCTL_FUZZ_SAMPLES", "2"))     # runs per command (plus one without a root)

# Commands that serve (they would run until stopped when the root is good).
SERVING = {("serve",), ("start",), ("restart",), ("quickstart",)}
# Parameters that name a file or directory (their values stay inside the working directory).
PATH_PARAMS = {"file", "path", "dest", "bundle", "to", "target", "source", "new_root", "password_file"}

TEXT = [b"caf\xe9\xff", "a" * 5000, "../../../../../escaped", "alice@../../../../x", "a\x01b\x1bc\nd\re\x7f",
        "", "-", "alice@example.test", "example.test", "INBOX", "x" * 64 + "@example.test", "%s%n{0}"]
PATHS = [b"out\xff", "d" * 300, "/nonexistent/deep/x", ".", "afile", "sub/out", "-"]
NUMBERS = ["9" * 5000, "-1", "abc", "0", "1e999"]


def commands() -> list[tuple[tuple[str, ...], click.Command]]:
    from mailctl.cli import cli
    ctx = click.Context(cli)
    out = []

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), path + (name,))
        else:
            out.append((path, cmd))
    walk(cli, ())
    return out


def value_for(param: click.Parameter, rng: random.Random):
    if param.name in PATH_PARAMS:
        return rng.choice(PATHS)
    if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
        return rng.choice(NUMBERS + TEXT[:3])
    return rng.choice(TEXT)


def hostile_argv(cmd: click.Command, rng: random.Random) -> list:
    argv: list = []
    for param in cmd.params:
        if isinstance(param, click.Argument):
            argv += [value_for(param, rng) for _ in range(1 if param.nargs == 1 else rng.randint(1, 2))]
        elif param.is_flag:
            if rng.random() < 0.3:
                argv.append(param.opts[0])
        elif rng.random() < 0.5:
            argv += [param.opts[0], value_for(param, rng)]
    return argv


def snapshot(case: Path, keep_out: set[Path]) -> dict[str, bytes | None]:
    out = {}
    for p in sorted(case.rglob("*")):
        if any(p == k or k in p.parents for k in keep_out):
            continue
        out[str(p.relative_to(case))] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("hostile-cli")
    root = make_root(base, domains=("example.test",), accounts={"alice@example.test": "alice-pass-1"},
                     settings={"queue.offline": True, "queue.nameservers": ["127.0.0.1:9"],
                               "queue.dns_timeout_s": 0.5, "queue.connect_timeout_s": 0.5})
    return root.path


def run_case(template: Path, case: Path, path: tuple[str, ...], argv: list, with_root: bool) -> str | None:
    """Run one command in its own copy of the root; return what went wrong, or None."""
    work, home = case / "work", case / "home"
    for d in (work / "sub", home, case / "outside"):
        d.mkdir(parents=True)
    (work / "afile").write_text("not a directory\n")
    (case / "outside" / "keep").write_text("untouched\n")
    root = case / "root"
    if with_root:
        shutil.copytree(template, root, symlinks=True)
    allowed = {root, work, home, case / "root-backups"}     # backup create's default is beside the root
    before = snapshot(case, allowed)
    out = run_mailctl(root, *path, *argv, input=b"Subject: hi\r\n\r\n\xff body\r\n", cwd=work,
                      env={"HOME": str(home), "MAILCTL_ROOT": ""}, timeout=90)
    err = out.stderr.decode("utf-8", "replace")
    shown = f"mailctl {' '.join(path)} {argv!r:.300}: exit {out.returncode}: {err[-600:]}"
    if "Traceback" in err or out.returncode not in (0, 1, 2):
        return shown
    if len(err.strip().splitlines()) > (8 if out.returncode == 2 else 3):   # usage: click's usage text
        return "stderr too long: " + shown
    if snapshot(case, allowed) != before:
        return "wrote outside its root: " + shown
    return None


def test_every_command_survives_hostile_arguments(template, tmp_path):
    rng = random.Random(SEED)
    cases = []
    for path, cmd in commands():
        if path in SERVING:
            continue
        for _ in range(SAMPLES):
            cases.append((path, hostile_argv(cmd, rng), True))
        cases.append((path, hostile_argv(cmd, rng), False))        # no root at all
    assert len(cases) > 150
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda ic: run_case(template, tmp_path / f"c{ic[0]}", *ic[1]), enumerate(cases)))
    failures = [r for r in results if r]
    assert not failures, f"{len(failures)} of {len(cases)} runs failed:\n" + "\n".join(failures[:15])


@pytest.mark.parametrize("args", [
    ("account", "name", "alice@example.test", b"\xff"),
    ("deliver", "alice@example.test", "-", "--from", b"\xff"),
    ("account", "add", b"b\xffb@example.test", "--password-stdin"),
    ("alias", "add", "sales@example.test", b"\xfe@example.test"),
])
def test_an_argument_that_is_not_utf8_is_a_one_line_usage_error(template, tmp_path, args):
    root = tmp_path / "root"
    shutil.copytree(template, root, symlinks=True)
    out = run_mailctl(root, *args, input=b"Subject: x\r\n\r\nbody\r\n")
    err = out.stderr.decode()
    assert out.returncode == 2, err
    assert err.count("\n") == 1 and "not valid UTF-8" in err and "\\xff" in err or "\\xfe" in err, err


@pytest.mark.parametrize("args", [
    ("backup", "verify", "b" * 300), ("backup", "restore", "b" * 300, "--dry-run"),
    ("backup", "list", "--to", "b" * 300), ("backup", "list", "--to", "afile"),
    ("backup", "verify", "x", "--to", "afile"),
])
def test_an_impossible_backup_path_is_one_line_exit_1(template, tmp_path, args):
    root = tmp_path / "root"
    shutil.copytree(template, root, symlinks=True)
    (tmp_path / "afile").write_text("a file, not a directory\n")
    out = run_mailctl(root, *args, cwd=tmp_path)
    err = out.stderr.decode()
    assert out.returncode == 1 and err.count("\n") == 1 and err.startswith("mailctl: "), err
    assert "Traceback" not in err


def test_an_unexpected_error_is_one_line_unless_debugging(template, tmp_path):
    """A state file that is a directory is not something any command expects."""
    root = tmp_path / "root"
    shutil.copytree(template, root, symlinks=True)
    shutil.rmtree(root / "state", ignore_errors=True)
    (root / "state").write_text("not a directory\n")
    quiet = run_mailctl(root, "ban", "list")
    assert quiet.returncode == 1 and quiet.stderr.decode().count("\n") == 1, quiet.stderr
    loud = run_mailctl(root, "ban", "list", env={"MAILCTL_DEBUG": "1"})
    assert b"Traceback" in loud.stderr


def test_deliver_from_must_be_an_address_not_a_header_line(template, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(template, root, symlinks=True)
    inbox = root / "mail" / "example.test" / "alice" / "new"
    out = run_mailctl(root, "deliver", "alice@example.test", "-", "--from", "a@b.example\r\nX-Evil: y",
                      input=b"Subject: hi\r\n\r\nbody\r\n")
    assert out.returncode == 1 and out.stderr.count(b"\n") == 1, out.stderr
    assert list(inbox.iterdir()) == []
    ok = run_mailctl(root, "deliver", "alice@example.test", "-", "--from", "<>", input=b"Subject: hi\r\n\r\nbody\r\n")
    assert ok.returncode == 0, ok.stderr
    [message] = inbox.iterdir()
    assert message.read_bytes().startswith(b"Return-Path: <>\n")
