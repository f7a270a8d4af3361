"""mailctl queue: see and manage the outbound queue (works with or without a running server)."""
from __future__ import annotations

import datetime
import json
import sys
import time

import click

from engine.errors import MailError
from engine.queue import Queue

from .context import Context, confirm, pass_ctx
from .output import done, emit_json, fields, table


@click.group("queue")
def queue() -> None:
    """List, inspect, retry, hold, release, delete and bounce queued outbound mail."""


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _when(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _notify(ctx: Context) -> None:
    from engine.outbound.wakeup import notify_server
    notify_server(ctx.existing_root())


def _ids(ids: tuple[str, ...], all_: bool, q: Queue) -> list[str]:
    if all_ and ids:
        raise click.UsageError("give queue ids or --all, not both")
    if all_:
        return [e.id for e in q.all()]
    if not ids:
        raise click.UsageError("give one or more queue ids, '-' to read them from stdin, or --all")
    out: list[str] = []
    for i in ids:
        if i == "-":
            out += [line.split()[0] for line in sys.stdin.read().splitlines() if line.strip()]
        else:
            out.append(i)
    return out


def _each(ids: list[str], action, verb: str) -> None:
    """Apply action to every id; report each, fail (exit 1) if any failed."""
    failures = 0
    for qid in ids:
        try:
            action(qid)
            done(f"{verb} {qid}")
        except MailError as e:
            failures += 1
            click.echo(f"mailctl: {e}", err=True)
    if failures:
        raise click.exceptions.Exit(1)


@queue.command("list")
@click.option("--from", "sender", metavar="TEXT", help="Only senders containing TEXT.")
@click.option("--to", metavar="TEXT", help="Only items with a pending recipient containing TEXT.")
@click.option("--domain", metavar="DOMAIN", help="Only items with a pending recipient at DOMAIN.")
@click.option("--state", type=click.Choice(["active", "deferred", "hold"]), help="Only this state.")
@click.option("--older-than", metavar="DURATION", help="Only items queued longer ago than this (30m, 2h, 3d).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON Lines, like postqueue -j).")
@pass_ctx
def list_(ctx: Context, sender, to, domain, state, older_than, as_json) -> None:
    """List queued items, oldest first."""
    from engine.outbound.queue_admin import matches, parse_duration, public
    older = parse_duration(older_than) if older_than else None
    q = Queue(ctx.existing_root())
    now = time.time()
    items = [e for e in q.all() if matches(e, sender=sender, to=to, domain=domain, state=state,
                                           older_than=older, now=now)]
    if as_json:
        for e in items:
            click.echo(json.dumps(public(e, now), ensure_ascii=False))
        return
    if not items:
        click.echo("queue is empty" if q.count() == 0 else "no queued item matches")
        return
    rows = [{"id": e.id, "state": e.state, "age": _age(now - e.created), "size": e.size,
             "sender": e.sender or "<>",
             "recipients": ", ".join(r.address for r in e.recipients if not r.done),
             "last": e.last_error[:80]} for e in items]
    table(rows, [("id", "ID"), ("state", "State"), ("age", "Age"), ("size", "Size"), ("sender", "Sender"),
                 ("recipients", "Recipients"), ("last", "Last error")])


@queue.command("show")
@click.argument("qid", metavar="ID")
@click.option("--body", is_flag=True, help="Print the whole message instead of the headers.")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def show(ctx: Context, qid: str, body: bool, as_json: bool) -> None:
    """Show one item: envelope, per-recipient status, attempts, last reply, headers."""
    from engine.outbound.queue_admin import public
    from engine.outbound.dsn import original_headers
    q = Queue(ctx.existing_root())
    env = q.find(qid)
    try:
        data = q.body_path(qid).read_bytes()
    except FileNotFoundError:
        data = b""
    text = data if body else original_headers(data)
    if as_json:
        emit_json({**public(env), "headers" if not body else "message": text.decode("utf-8", "replace")})
        return
    fields({"id": env.id, "state": env.state, "sender": env.sender or "<>", "size": env.size,
            "source": env.source, "created": _when(env.created), "attempts": env.attempts,
            "last attempt": _when(env.last_attempt), "next attempt": _when(env.next_attempt),
            "last error": env.last_error})
    click.echo("")
    table([{"address": r.address, "status": r.status, "reply": r.reply, "remote": r.remote}
           for r in env.recipients],
          [("address", "Recipient"), ("status", "Status"), ("reply", "Last reply"), ("remote", "Host")])
    click.echo("")
    click.echo(text.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n"))


@queue.command("flush")
@pass_ctx
def flush(ctx: Context) -> None:
    """Try every deferred item now (also in offline mode). Without a running server the
    delivery runs in the foreground."""
    from engine.outbound.queue_admin import flush as do_flush
    where = do_flush(ctx.existing_root())
    done("flush requested from the running server" if where == "server" else "queue flushed")


@queue.command("retry")
@click.argument("ids", nargs=-1, metavar="ID...")
@pass_ctx
def retry(ctx: Context, ids) -> None:
    """Make items due now (ids from stdin with '-')."""
    q = Queue(ctx.existing_root())
    _each(_ids(ids, False, q), q.retry, "retrying")
    _notify(ctx)


@queue.command("hold")
@click.argument("ids", nargs=-1, metavar="ID...")
@click.option("--all", "all_", is_flag=True, help="Every queued item.")
@pass_ctx
def hold(ctx: Context, ids, all_) -> None:
    """Stop delivery of items until released."""
    q = Queue(ctx.existing_root())
    _each(_ids(ids, all_, q), q.hold, "held")
    _notify(ctx)


@queue.command("release")
@click.argument("ids", nargs=-1, metavar="ID...")
@click.option("--all", "all_", is_flag=True, help="Every held item.")
@pass_ctx
def release(ctx: Context, ids, all_) -> None:
    """Release held items; they are tried at once."""
    q = Queue(ctx.existing_root())
    targets = _ids(ids, False, q) if not all_ else [e.id for e in q.all() if e.state == "hold"]
    if all_ and ids:
        raise click.UsageError("give queue ids or --all, not both")
    _each(targets, q.release, "released")
    _notify(ctx)


@queue.command("delete")
@click.argument("ids", nargs=-1, metavar="ID...")
@click.option("--all", "all_", is_flag=True, help="Every queued item.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def delete(ctx: Context, ids, all_, yes) -> None:
    """Delete items without notifying anyone (ids from stdin with '-')."""
    q = Queue(ctx.existing_root())
    targets = _ids(ids, all_, q)
    if not targets:
        done("nothing to delete")
        return
    confirm(yes, f"Delete {len(targets)} queued item(s) for good?")
    _each(targets, q.delete, "deleted")
    _notify(ctx)


@queue.command("bounce")
@click.argument("ids", nargs=-1, metavar="ID...")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def bounce(ctx: Context, ids, yes) -> None:
    """Fail items now and send a bounce (DSN) to each sender."""
    from engine.outbound.queue_admin import bounce_now
    from engine.runtime import Runtime
    root = ctx.existing_root()
    q = Queue(root)
    targets = _ids(ids, False, q)
    confirm(yes, f"Bounce {len(targets)} queued item(s) to their senders?")
    runtime = Runtime.load(root)
    try:
        _each(targets, lambda qid: bounce_now(runtime, qid), "bounced")
    finally:
        runtime.close()
    _notify(ctx)


@queue.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Output as JSON.")
@pass_ctx
def stats(ctx: Context, as_json: bool) -> None:
    """Counts by state, and pending recipients by destination domain and age (like qshape)."""
    from engine.outbound.queue_admin import stats as compute
    data = compute(Queue(ctx.existing_root()).all())
    if as_json:
        emit_json(data)
        return
    s = data["states"]
    click.echo(f"{data['messages']} messages: {s['active']} active, {s['deferred']} deferred, {s['hold']} held")
    cols = [("domain", "Domain"), ("total", "T")] + [(b, b) for b in data["age_buckets"]]
    rows = [{"domain": "TOTAL", **data["total"]}] + [{"domain": d, **row} for d, row in data["domains"].items()]
    table(rows, cols)


list_.name = "list"
COMMANDS = [queue]
