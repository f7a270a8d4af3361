"""mailctl: the command line. Each command is a thin shell over one engine call."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.errors import ConfigError, MailError

from .context import Context
from .output import error


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--root", "root_path", envvar="MAILCTL_ROOT", metavar="DIR",
              help="The mail root (default: $MAILCTL_ROOT, else ./mailroot).")
@click.version_option(package_name="mailctl")
@click.pass_context
def cli(ctx: click.Context, root_path: str | None) -> None:
    """mailctl: a complete mail server whose state is a Maildir tree plus TOML files."""
    ctx.obj = Context(root_path)


def _register() -> None:
    """Every module of this package that defines COMMANDS adds them (one module per noun)."""
    import importlib
    import pkgutil
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]),
                       key=lambda i: i.name):
        if info.name in ("cli", "context", "output", "__main__"):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: expected errors are one line on stderr and exit 1; usage errors exit 2."""
    try:
        code = cli.main(args=argv, prog_name="mailctl", standalone_mode=False)
        if isinstance(code, int):      # a command's click.exceptions.Exit(n), returned by click
            return code
    except click.exceptions.Abort:
        error("aborted")
        return 1
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except ConfigError as e:
        for problem in e.problems[:1]:
            error(problem if problem == str(e) else str(e))
        return 1
    except MailError as e:
        error(str(e))
        return 1
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except click.exceptions.Exit as e:
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
