"""Every command a module defines is reachable from the lazy `mailctl` group."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import click

import mailctl
from mailctl.cli import COMMAND_MODULES, cli


def test_every_command_module_is_registered():
    found = {}
    for info in pkgutil.iter_modules([str(Path(mailctl.__file__).parent)]):
        if info.name == "__main__":      # running it would run the CLI
            continue
        module = importlib.import_module(f"mailctl.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            found[command.name] = info.name
    assert found == COMMAND_MODULES


def test_lazy_group_resolves_each_name():
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        assert cli.get_command(ctx, name).name == name
    assert cli.get_command(ctx, "nope") is None
