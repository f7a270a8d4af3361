"""mailctl backup: consistent backups of a live root; verify, restore, list, prune."""
from __future__ import annotations

from pathlib import Path

import sys

import click

from engine.backup import create_backup, default_destination, restore_backup, verify_backup
from engine.backup import prune as prune_mod
from engine.backup import destination
from engine.backup.hooks import run_hook
from engine.backup.progress import Progress
from engine.errors import MailError
from engine.storage_errors import as_storage_error, is_storage_fault
from engine.root import Root

from .context import Context, confirm, pass_ctx
from .output import done, emit_json, error, table, warn

# -- progress: a rich bar on a terminal, nothing on a pipe unless -v --------------

class _Silent(Progress):
    pass


class _Verbose(Progress):
    def start(self, description, total=None):
        click.echo(f"{description}" + (f" ({total})" if total else ""), err=True)

    def note(self, message):
        click.echo(message, err=True)


class _Bar(Progress):
    def __init__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn
        self.rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), transient=True)
        self.task = None

    def start(self, description, total=None):
        if self.task is not None:
            self.rich.update(self.task, visible=False)
        self.task = self.rich.add_task(description, total=total)

    def advance(self, n=1):
        if self.task is not None:
            self.rich.advance(self.task, n)

    def note(self, message):
        self.rich.console.print(message)

    def __enter__(self):
        self.rich.__enter__()
        return self

    def __exit__(self, *exc):
        self.rich.__exit__(*exc)


class progress_for:
    """with progress_for(verbose) as p: ... (a bar only when stderr is a terminal)."""

    def __init__(self, verbose: bool = False):
        if sys.stderr.isatty():
            self.p = _Bar()
        elif verbose:
            self.p = _Verbose()
        else:
            self.p = _Silent()

    def __enter__(self) -> Progress:
        if isinstance(self.p, _Bar):
            self.p.__enter__()
        return self.p

    def __exit__(self, *exc):
        if isinstance(self.p, _Bar):
            self.p.__exit__(*exc)


json_option = click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
verbose_option = click.option("-v", "--verbose", is_flag=True, help="Report progress on a pipe too.")


@click.group("backup")
def backup() -> None:
    """Back up the root while the server runs; verify, restore, list and prune backups."""


def _dest(ctx: Context, to: str | None) -> Path:
    return Path(to).absolute() if to else default_destination(ctx.root)


@backup.command("create")
@click.option("--to", "to", metavar="DIR|FILE.tar.gz", help="Destination directory (default: <root>-backups "
              "beside the root), or an archive path ending in .tar.gz.")
@click.option("--incremental", is_flag=True, help="Store only what changed since the newest backup in the destination.")
@click.option("--domain", metavar="DOMAIN", help="Only this domain's file, mailboxes and DKIM keys.")
@click.option("--account", metavar="ADDRESS", help="Only this account's entry and mailbox.")
@click.option("--no-queue", is_flag=True, help="Leave the outbound queue out.")
@click.option("--archive", is_flag=True, help="Write one compressed tar instead of a directory snapshot.")
@verbose_option
@json_option
@pass_ctx
def create(ctx: Context, to, incremental, domain, account, no_queue, archive, verbose, as_json) -> None:
    """Make a backup (exit 0 only when it is complete and verified)."""
    root = ctx.existing_root()
    if domain and account:
        raise click.UsageError("give --domain or --account, not both")
    try:
        with progress_for(verbose) as progress:
            result = create_backup(root, _dest(ctx, to), incremental=incremental, domain=domain, account=account,
                                   queue=not no_queue, archive=archive, progress=progress)
    except (MailError, OSError) as e:
        if is_storage_fault(e):     # the destination filled (or is read-only): name it
            message = str(as_storage_error(e, _dest(ctx, to)))
        else:
            message = str(e) if isinstance(e, MailError) else f"backup failed: {e.filename or ''}: {e.strerror}"
        problem = run_hook(root, "backup-failed", str(_dest(ctx, to)), message, "failed")
        if problem:
            error(problem)
        raise MailError(message) from None
    problem = run_hook(root, "backup-completed", str(result.path), result.summary(), "ok")
    if as_json:
        emit_json({"name": result.name, "path": str(result.path), "kind": result.kind, "files": result.files,
                   "bytes": result.bytes, "messages": result.messages, "stored_files": result.stored_files,
                   "stored_bytes": result.stored_bytes, "seconds": round(result.seconds, 3),
                   "verified": result.verified, "notes": result.notes})
    else:
        for note in result.notes:
            click.echo(f"note: {note}", err=True)
        done(result.summary())
    if problem:
        raise MailError(problem)


@backup.command("list")
@click.option("--to", "to", metavar="DIR", help="The backup destination (default: <root>-backups).")
@json_option
@pass_ctx
def list_(ctx: Context, to, as_json) -> None:
    """List the backups in a destination, oldest first."""
    refs, problems = destination.list_backups(_dest(ctx, to))
    rows = [{"name": r.name, "kind": r.manifest.kind, "parent": r.manifest.parent,
             "created": _when(r.created), "messages": r.manifest.messages, "files": len(r.manifest.files),
             "bytes": r.manifest.total_bytes, "format": "archive" if r.archive else "directory",
             "path": str(r.path)} for r in refs]
    if as_json:
        emit_json(rows)
    else:
        table(rows, [("name", "Name"), ("kind", "Kind"), ("created", "Created"), ("messages", "Messages"),
                     ("bytes", "Bytes"), ("format", "Format")])
    for p in problems:
        error(p)


def _when(ts: float) -> str:
    import time
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _resolve(ctx: Context, name: str, to: str | None) -> Path:
    p = Path(name)
    shown = name if len(name) <= 80 else name[:77] + "..."
    try:
        if p.exists():
            return p.absolute()
        ref = destination.find_in(_dest(ctx, to), name)
    except OSError as e:            # a name too long for the file system, and the like
        raise MailError(f"{shown}: not a backup: {e.strerror}") from None
    if ref is None:
        raise MailError(f"{shown}: no such backup; see 'mailctl backup list'")
    return ref.path


@backup.command("verify")
@click.argument("backup_name", metavar="BACKUP")
@click.option("--to", "to", metavar="DIR", help="Where to look for BACKUP by name.")
@verbose_option
@json_option
@pass_ctx
def verify(ctx: Context, backup_name, to, verbose, as_json) -> None:
    """Check a backup's archive, every checksum, and its chain; name each damaged or missing file."""
    with progress_for(verbose) as progress:
        report = verify_backup(_resolve(ctx, backup_name, to), progress=progress)
    if as_json:
        emit_json({"name": report.name, "ok": report.ok, "checked": report.checked, "bytes": report.bytes,
                   "backups": report.backups, "problems": report.problems, "warnings": report.warnings})
    else:
        for p in report.problems:
            error(p)
        for w in report.warnings:
            warn(w)
        done(report.summary())
    if not report.ok:
        raise click.exceptions.Exit(1)


@backup.command("restore")
@click.argument("backup_name", metavar="BACKUP")
@click.option("--account", metavar="ADDRESS", help="Restore only this mailbox (and the account, if it is gone).")
@click.option("--domain", metavar="DOMAIN", help="Restore only this domain.")
@click.option("--to", "target", metavar="ROOT", help="Restore into this root (default: the current root).")
@click.option("--from", "source", metavar="DIR", help="Where to look for BACKUP by name.")
@click.option("--dry-run", is_flag=True, help="Say what would be restored; change nothing.")
@verbose_option
@json_option
@pass_ctx
def restore(ctx: Context, backup_name, account, domain, target, source, dry_run, verbose, as_json) -> None:
    """Restore a backup (applying its chain). Mail already there is kept, missing mail added once."""
    if domain and account:
        raise click.UsageError("give --domain or --account, not both")
    root = Root(target) if target else ctx.root
    with progress_for(verbose) as progress:
        result = restore_backup(_resolve(ctx, backup_name, source), root, account=account, domain=domain,
                                dry_run=dry_run, progress=progress)
    if as_json:
        emit_json(result.__dict__ | {"target": str(result.target)})
    else:
        done(result.summary())


@backup.command("prune")
@click.option("--keep", type=click.IntRange(min=1), required=True, help="How many newest chains to keep.")
@click.option("--to", "to", metavar="DIR", help="The backup destination (default: <root>-backups).")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def prune(ctx: Context, keep, to, dry_run, yes) -> None:
    """Remove all but the newest N chains (a full backup with its incrementals)."""
    dest = _dest(ctx, to)
    if not dry_run:
        doomed = prune_mod.prune(dest, keep, dry_run=True)
        if doomed:
            confirm(yes, f"remove {len(doomed)} backups from {dest}?")
    removed = prune_mod.prune(dest, keep, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    done(f"{verb} {len(removed)} backups" + (": " + ", ".join(removed) if removed else ""))


COMMANDS = [backup]
