"""sendmail-mailctl: a sendmail-compatible entry point (for cron, PHP's mail(), scripts).

    sendmail-mailctl [-t] [-i] [-oi] [-f sender] [-F name] [--root DIR] [recipient ...]

Other sendmail flags (-odi, -oem, -v, -bm, -N x, -R x, -B x ...) are accepted and ignored.
The root comes from --root or $MAILCTL_ROOT. Exit codes follow sysexits: 0 sent,
64 usage, 65 bad message, 69 not sent to anyone, 75 temporary failure.
"""
from __future__ import annotations

import os
import sys

EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_TEMPFAIL = 64, 65, 69, 75
_WITH_ARG = {"-f", "-F", "-N", "-R", "-B", "-O", "-L", "-p", "-q", "-r", "-V", "-X", "-C", "-h"}


def parse(argv: list[str]) -> dict:
    opts = {"extract": False, "ignore_dots": False, "sender": None, "recipients": [], "root": None}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            opts["recipients"] += argv[i + 1:]
            break
        if a == "--root":
            if i + 1 >= len(argv):
                raise ValueError("--root needs a directory")
            opts["root"] = argv[i + 1]
            i += 2
            continue
        if a.startswith("--root="):
            opts["root"] = a[7:]
        elif a == "-t":
            opts["extract"] = True
        elif a in ("-i", "-oi"):
            opts["ignore_dots"] = True
        elif a[:2] in ("-f", "-r") and len(a) > 2:
            opts["sender"] = a[2:]
        elif a in _WITH_ARG:
            if i + 1 >= len(argv):
                raise ValueError(f"{a} needs an argument")
            if a in ("-f", "-r"):
                opts["sender"] = argv[i + 1]
            i += 2
            continue
        elif a.startswith("-"):
            pass                      # -odi, -oem, -v, -bm, -F<name>, ...: accepted, ignored
        else:
            opts["recipients"].append(a)
        i += 1
    if opts["sender"] in ("<>",):
        opts["sender"] = ""
    return opts


def main(argv: list[str] | None = None) -> int:
    from engine import settings as settings_mod
    from engine.accept.local import send_message
    from engine.directory import Directory
    from engine.errors import InvalidInput, MailError
    from engine.root import Root

    from .send import read_message
    as_process = argv is None
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse(argv)
    except ValueError as e:
        print(f"sendmail-mailctl: {e}", file=sys.stderr)
        return EX_USAGE
    root = Root.locate(opts["root"])
    if not os.access(root.config_file, os.R_OK):
        return _through_server(root, opts)
    try:
        root.require()
        if as_process:             # root's mail is queued as the server's user, as `mailctl send`
            from engine.privileges import act_as_root_owner
            act_as_root_owner(root.path)
        settings = settings_mod.load(root.config_file, "mailctl.toml")
        limit = settings_mod.message_size_limit(settings)
        data = read_message(sys.stdin.buffer, opts["ignore_dots"], limit)
        prepared, outcome = send_message(root, settings, Directory.load(root, settings), data,
                                         sender=opts["sender"], recipients=opts["recipients"],
                                         extract=opts["extract"], source="sendmail")
    except InvalidInput as e:
        print(f"sendmail-mailctl: {e}", file=sys.stderr)
        return EX_DATAERR
    except MailError as e:
        print(f"sendmail-mailctl: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    except OSError as e:
        print(f"sendmail-mailctl: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    for w in prepared.warnings:
        print(f"sendmail-mailctl: skipped {w}", file=sys.stderr)
    for rcpt, why in outcome.rejected.items():
        print(f"sendmail-mailctl: {rcpt}: {why}", file=sys.stderr)
    if not outcome.delivered and not outcome.queue_id:
        return EX_UNAVAILABLE
    return 0


def _through_server(root, opts: dict) -> int:
    """A user who cannot read the root (cron, www-data, a daemon) submits through the running
    server's local socket, which knows the caller from the kernel (engine/localsubmit.py)."""
    from engine import localsubmit
    from engine.errors import InvalidInput
    from engine.settings import MESSAGE_SIZE_CEILING

    from .send import read_message
    try:
        data = read_message(sys.stdin.buffer, opts["ignore_dots"], MESSAGE_SIZE_CEILING)   # the server applies its limit
        reply = localsubmit.submit(root, data, opts["sender"], opts["recipients"], opts["extract"])
    except InvalidInput as e:
        print(f"sendmail-mailctl: {e}", file=sys.stderr)
        return EX_DATAERR
    except localsubmit.ServerDown as e:
        print(f"sendmail-mailctl: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    if not reply.get("ok"):
        print(f"sendmail-mailctl: {reply.get('error') or 'refused'}", file=sys.stderr)
        return EX_TEMPFAIL if reply.get("temporary") else EX_DATAERR
    for w in reply.get("warnings") or []:
        print(f"sendmail-mailctl: skipped {w}", file=sys.stderr)
    for rcpt, why in (reply.get("rejected") or {}).items():
        print(f"sendmail-mailctl: {rcpt}: {why}", file=sys.stderr)
    return 0 if reply.get("delivered") or reply.get("queued") else EX_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
