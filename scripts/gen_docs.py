#!/usr/bin/env python3
"""Generate man/*.1 and completions/ from the click app.

    python scripts/gen_docs.py          # write the files
    python scripts/gen_docs.py --check  # exit 1 if the committed files are stale

Man pages: one per command (mailctl.1, mailctl-account.1, mailctl-account-add.1 ...).
Completions: click's own completion scripts for bash, zsh and fish.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from mailctl.cli import cli  # noqa: E402

SHELLS = {"bash": "mailctl.bash", "zsh": "_mailctl", "fish": "mailctl.fish"}


def _roff(text: str) -> str:
    lines = []
    for line in text.splitlines():
        line = line.replace("\\", "\\e")
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line.replace("-", "\\-"))
    return "\n".join(lines)


def _subcommands(command: click.Command) -> dict[str, click.Command]:
    """A group's subcommands, through the API lazy groups implement too."""
    if not isinstance(command, click.Group):
        return {}
    ctx = click.Context(command)
    return {name: command.get_command(ctx, name) for name in sorted(command.list_commands(ctx))}


def _walk(command: click.Command, path: list[str]):
    yield path, command
    for name, sub in _subcommands(command).items():
        yield from _walk(sub, path + [name])


def man_page(path: list[str], command: click.Command, version: str) -> str:
    ctx = click.Context(command, info_name=" ".join(path))
    title = "-".join(path)
    out = [f'.TH "{title.upper()}" "1" "" "mailctl {version}" "mailctl manual"',
           ".SH NAME", f"{_roff(title)} \\- {_roff(command.get_short_help_str(200))}",
           ".SH SYNOPSIS", f".B {_roff(' '.join(path))}", _roff(" ".join(command.collect_usage_pieces(ctx)))]
    if command.help:
        out += [".SH DESCRIPTION", _roff(click.unstyle(command.help.replace("\b\n", "")))]
    options = [p for p in command.get_params(ctx) if isinstance(p, click.Option) and not p.hidden]
    if options:
        out.append(".SH OPTIONS")
        for opt in options:
            record = opt.get_help_record(ctx)
            if record:
                out += [".TP", f"\\fB{_roff(record[0])}\\fR", _roff(record[1])]
    subs = _subcommands(command)
    if subs:
        out.append(".SH COMMANDS")
        for name, sub in subs.items():
            if sub.hidden:
                continue
            out += [".TP", f"\\fB{_roff(name)}\\fR", _roff(sub.get_short_help_str(200)),
                    f"See \\fB{'-'.join(path + [name])}\\fR(1)."]
    out += [".SH ENVIRONMENT", ".TP", "\\fBMAILCTL_ROOT\\fR", "The mail root when \\-\\-root is not given."]
    return "\n".join(out) + "\n"


def completion(shell: str) -> str:
    env = dict(os.environ, _MAILCTL_COMPLETE=f"{shell}_source")
    return subprocess.run([sys.executable, "-m", "mailctl"], env=env, capture_output=True,
                          text=True, check=True, cwd=TOP).stdout


def generate() -> dict[Path, str]:
    from importlib.metadata import version
    ver = version("mailctl")
    files = {}
    for path, command in _walk(cli, ["mailctl"]):
        if not command.hidden:
            files[TOP / "man" / f"{'-'.join(path)}.1"] = man_page(path, command, ver)
    for shell, name in SHELLS.items():
        files[TOP / "completions" / name] = completion(shell)
    return files


def main() -> int:
    check = "--check" in sys.argv
    files = generate()
    stale = []
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
            if not check:
                path.parent.mkdir(exist_ok=True)
                path.write_text(text)
    extra = [p for d in ("man", "completions") for p in (TOP / d).glob("*") if p not in files]
    for p in extra:
        stale.append(p)
        if not check:
            p.unlink()
    if check and stale:
        print("stale: " + ", ".join(str(p.relative_to(TOP)) for p in stale) +
              "; run python scripts/gen_docs.py", file=sys.stderr)
        return 1
    if not check:
        print(f"{len(files)} files up to date ({len(stale)} rewritten)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
