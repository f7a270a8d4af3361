"""mailctl: the command line. Each command is a thin shell over one engine call."""
from __future__ import annotations

import importlib
import os
import sys

import click

from engine.errors import ConfigError, MailError
from engine.storage_errors import as_storage_error, is_storage_fault

from .context import Context
from .output import error


# command name -> the module of mailctl that defines it (in its COMMANDS). Modules are
# imported only when their command runs, so a script calling `mailctl account list` in a
# loop does not pay for importing the server, backup and IMAP code every time.
# tests/test_cli_registry.py checks this map against every module's COMMANDS.
COMMAND_MODULES = {
    "access": "access",                 # run-time access lists (engine/access/)
    "account": "account", "alias": "alias", "autoreply": "autoreply", "backup": "backup", "ban": "ban", "check": "check", "config": "config",
    "deliver": "deliver", "dkim": "dkim", "domain": "domain", "export": "export", "forward": "forward",
    "greylist": "greylist", "import": "importcmd", "init": "init", "list": "lists", "mailbox": "mailbox", "migrate": "migrate",
    "public": "public", "queue": "queue", "rule": "rule", "send": "send", "signature": "signature", "systemd-unit": "systemd", "who": "who",
    "srs": "srs",
    **{name: "serve" for name in ("serve", "start", "stop", "restart", "reload", "status", "quickstart")},
}


# Commands run by root as root: they bind ports, signal the server or create the root and
# its user. Every other command run by root on a root owned by the server's user becomes
# that user, so the files it makes stay the server's (engine/privileges.py).
KEEPS_ROOT = {"serve", "start", "stop", "restart", "init", "quickstart"}
_AS_PROCESS = object()          # main() called as the program itself, not from a test


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(name)
        if module_name is None:
            return None
        module = importlib.import_module(f"{__package__}.{module_name}")
        return next((c for c in module.COMMANDS if c.name == name), None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--root", "root_path", envvar="MAILCTL_ROOT", metavar="DIR",
              help="The mail root (default: $MAILCTL_ROOT, else ./mailroot).")
@click.version_option(package_name="mailctl")
@click.pass_context
def cli(ctx: click.Context, root_path: str | None) -> None:
    """mailctl: a complete mail server whose state is a Maildir tree plus TOML files."""
    as_process = ctx.obj is _AS_PROCESS
    ctx.obj = Context(root_path)
    if as_process and ctx.invoked_subcommand not in KEEPS_ROOT:
        from engine import privileges
        privileges.act_as_root_owner(ctx.obj.root.path)


def main(argv: list[str] | None = None) -> int:
    """Entry point: expected errors are one line on stderr and exit 1; usage errors exit 2.
    Anything unexpected is one line too (MAILCTL_DEBUG=1 shows the traceback)."""
    args = sys.argv[1:] if argv is None else argv
    bad = next((a for a in args if not _is_utf8(a)), None)
    if bad is not None:
        shown = os.fsencode(bad).decode("utf-8", "backslashreplace")
        error(f"argument '{shown}' is not valid UTF-8; give text and file names in UTF-8")
        return 2
    try:
        code = cli.main(args=args, prog_name="mailctl", standalone_mode=False,
                        obj=_AS_PROCESS if argv is None else None)
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
    except Exception as e:
        if os.environ.get("MAILCTL_DEBUG"):
            raise
        error(_unexpected(e))
        return 1
    return 0


def _is_utf8(arg: str) -> bool:
    """Python hands undecodable argv bytes over as lone surrogates."""
    try:
        arg.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unexpected(e: Exception) -> str:
    """One line for an error no command expected: an OSError names its file, others their kind."""
    if is_storage_fault(e):
        return str(as_storage_error(e))     # a full or read-only disk: a condition, not a bug
    if isinstance(e, OSError) and e.strerror:
        name = os.fsdecode(e.filename) if e.filename is not None else ""
        where = (name if len(name) <= 80 else name[:77] + "...") + ": " if name else ""
        return f"{where}{e.strerror}"
    if isinstance(e, UnicodeError):
        return f"text that is not valid UTF-8 ({e.reason})"
    return f"internal error: {type(e).__name__}: {e} (set MAILCTL_DEBUG=1 to see where)"


if __name__ == "__main__":
    sys.exit(main())
