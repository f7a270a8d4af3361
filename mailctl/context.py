"""What every command needs: the root, its settings and the directory, loaded lazily."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from engine import settings as settings_mod
from engine.directory import Directory
from engine.errors import InvalidInput, MailError
from engine.root import Root


class Context:
    def __init__(self, root_path: str | None):
        self.root_path = root_path
        self._root: Root | None = None
        self._settings = None

    @property
    def root(self) -> Root:
        if self._root is None:
            self._root = Root.locate(self.root_path)
        return self._root

    def existing_root(self) -> Root:
        return self.root.require()

    @property
    def settings(self):
        if self._settings is None:
            root = self.existing_root()
            self._settings = settings_mod.load(root.config_file, "mailctl.toml")
        return self._settings

    def directory(self) -> Directory:
        return Directory.load(self.existing_root(), self.settings)


pass_ctx = click.make_pass_decorator(Context)


def read_secret(password_stdin: bool, password_file: str | None, prompt: str = "Password") -> str:
    """A password from stdin, a file, or an interactive prompt with confirmation; never argv."""
    if password_stdin and password_file:
        raise InvalidInput("give either --password-stdin or --password-file, not both")
    if password_stdin:
        data = sys.stdin.readline()
        return data.rstrip("\r\n")
    if password_file:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except OSError as e:
            raise MailError(f"{password_file}: cannot read password file: {e.strerror}") from None
        return text.splitlines()[0] if text else ""
    if not sys.stdin.isatty():
        raise InvalidInput("no terminal to ask for a password; use --password-stdin or --password-file")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


def confirm(yes: bool, question: str) -> None:
    """Destructive commands ask, or take --yes; without a terminal, --yes is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(f"{question} — refusing without a terminal; add --yes to confirm")
    click.confirm(question, abort=True)
