"""Output for humans and scripts: --json for scripts, tables for people, one-line errors.

No colour or ANSI codes when stdout is not a terminal.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Sequence

import click


def emit_json(data: Any) -> None:
    """Indented on a terminal; compact on a pipe, where the C encoder is many times faster."""
    if sys.stdout.isatty():
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        click.echo(json.dumps(data, ensure_ascii=False, default=str))


def _console():
    from rich.console import Console
    tty = sys.stdout.isatty()
    width = None if tty else int(os.environ.get("COLUMNS", "200"))
    return Console(no_color=not tty, highlight=False, width=width, force_terminal=tty or None,
                   color_system="auto" if tty else None)


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str]], title: str | None = None) -> None:
    """Print rows as a table; columns are (key, heading)."""
    from rich import box
    from rich.table import Table
    t = Table(title=title, box=box.SIMPLE_HEAD if sys.stdout.isatty() else box.ASCII2, show_edge=False)
    for _, heading in columns:
        t.add_column(heading, overflow="fold")
    for row in rows:
        t.add_row(*[_cell(row.get(key)) for key, _ in columns])
    _console().print(t)


def fields(data: dict, order: Iterable[str] | None = None) -> None:
    """Print one record as aligned 'key: value' lines."""
    keys = list(order) if order else list(data)
    width = max((len(k) for k in keys), default=0)
    for k in keys:
        click.echo(f"{k.ljust(width)}  {_cell(data.get(k))}")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    return str(v)


def done(message: str) -> None:
    """A one-line confirmation of a change."""
    click.echo(message)


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127]}


def error(message: str) -> None:
    """One line on stderr, whatever the message quotes (line breaks, control
    characters and undecodable bytes are shown escaped)."""
    line = message.translate(_CONTROL).encode("utf-8", "backslashreplace").decode("utf-8")
    click.echo(f"mailctl: {line}", err=True)
