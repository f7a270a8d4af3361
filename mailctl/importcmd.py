"""mailctl import: mail from Maildir trees, mbox files and IMAP servers; accounts from
Dovecot passwd-files. Every run can be repeated: what is already there is skipped."""
from __future__ import annotations

import click


from .backup import progress_for, verbose_option
from .context import Context, pass_ctx, read_secret
from .output import done, emit_json, error

json_option = click.option("--json", "as_json", is_flag=True, help="Output as JSON.")


@click.group("import")
def import_() -> None:
    """Import mail (Maildir, mbox, IMAP) and accounts (passwd-file); safe to run again."""


def _finish(counts, what: str, as_json: bool) -> None:
    if as_json:
        emit_json({"imported": counts.imported, "skipped": counts.skipped, "failed": counts.failed,
                   "problems": counts.problems})
    else:
        for p in counts.problems[:20]:
            error(p)
        done(counts.summary(what))
    if counts.failed:
        raise click.exceptions.Exit(1)


@import_.command("maildir")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--account", required=True, metavar="ADDRESS", help="The account to import into.")
@verbose_option
@json_option
@pass_ctx
def maildir(ctx: Context, path, account, verbose, as_json) -> None:
    """Import a Maildir tree (Dovecot/Courier Maildir++ or fs layout) with folders, flags and dates."""
    from engine.importers.common import Importer
    from engine.importers.maildir import import_maildir
    with progress_for(verbose) as progress, Importer(ctx.existing_root(), account, progress) as imp:
        counts = import_maildir(imp, path)
    _finish(counts, f"{path} -> {imp.address}", as_json)


@import_.command("mbox")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--account", required=True, metavar="ADDRESS", help="The account to import into.")
@click.option("--folder", default="INBOX", show_default=True, help="The folder to import into.")
@verbose_option
@json_option
@pass_ctx
def mbox(ctx: Context, file, account, folder, verbose, as_json) -> None:
    """Import an mbox file (mboxo or mboxrd)."""
    from engine.importers.common import Importer
    from engine.importers.mbox import import_mbox
    with progress_for(verbose) as progress, Importer(ctx.existing_root(), account, progress) as imp:
        counts = import_mbox(imp, file, folder)
    _finish(counts, f"{file} -> {imp.address}/{folder}", as_json)


@import_.command("imap")
@click.option("--host", required=True, help="The IMAP server to copy from.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default 143, or 993 with --tls).")
@click.option("--tls", "security", flag_value="tls", help="Implicit TLS (port 993).")
@click.option("--starttls", "security", flag_value="starttls", help="STARTTLS on the plain port.")
@click.option("--insecure", is_flag=True, help="Do not verify the server's certificate.")
@click.option("--user", required=True, help="Login name on the old server.")
@click.option("--password-file", required=True, type=click.Path(dir_okay=False), help="File whose first line is the password.")
@click.option("--account", required=True, metavar="ADDRESS", help="The account to import into.")
@click.option("--folder-map", multiple=True, metavar="OLD=NEW", help="Import folder OLD as NEW (repeatable).")
@verbose_option
@json_option
@pass_ctx
def imap(ctx: Context, host, port, security, insecure, user, password_file, account, folder_map, verbose, as_json) -> None:
    """Copy every folder from a live IMAP server, with flags and internal dates."""
    from engine.importers.common import Importer
    from engine.importers.imap import ImapSource, import_imap, parse_folder_map
    mapping = parse_folder_map(folder_map)
    src = ImapSource(host, port, security or "none", user, read_secret(False, password_file), not insecure)
    with progress_for(verbose) as progress, Importer(ctx.existing_root(), account, progress) as imp:
        counts = import_imap(imp, src, mapping)
    _finish(counts, f"{user}@{host} -> {imp.address}", as_json)


@import_.command("passwd-file")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--domain", required=True, help="The domain the accounts belong to.")
@json_option
@pass_ctx
def passwd_file(ctx: Context, file, domain, as_json) -> None:
    """Add the accounts of a Dovecot passwd-file, keeping their password hashes."""
    from engine.importers.passwd import import_passwd_file
    counts = import_passwd_file(ctx.existing_root(), ctx.settings, file, domain)
    _finish(counts, file, as_json)


COMMANDS = [import_]
