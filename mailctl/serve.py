"""mailctl serve | start | stop | restart | status | reload | quickstart: running the server."""
from __future__ import annotations

import sys

import click

from engine import background, control
from engine.errors import MailError

from .context import Context, pass_ctx
from .output import done, emit_json, fields, table

json_option = click.option("--json", "as_json", is_flag=True, help="Output as JSON.")


processes_option = click.option(
    "--processes", type=click.IntRange(min=0, max=15), default=None,
    help="Serving processes sharing the listeners (SO_REUSEPORT); 0 = one per CPU core. "
         "Default: server.processes in mailctl.toml.")


@click.command("serve")
@processes_option
@click.option("--child", hidden=True, help="(internal) a serving process of the supervisor: slot, sockets, user (JSON).")
@pass_ctx
def serve(ctx: Context, processes: int | None, child: str | None) -> None:
    """Run the server in the foreground (logs to stderr and log/mailctl.log).

    A supervising process binds the ports and keeps the serving processes running
    (replacing any that dies); started as root, they run as server.user. SIGHUP reloads
    the configuration; SIGTERM or Ctrl-C stops accepting, lets messages in flight finish
    and exits 0."""
    from engine import service
    root = ctx.existing_root()
    if child:                  # becomes its user before reading anything
        import json
        sys.exit(service.serve_child(root, json.loads(child)))
    _ = ctx.settings    # a broken mailctl.toml fails here with file:line
    sys.exit(service.serve(root, processes=processes))


@click.command("start")
@processes_option
@pass_ctx
def start(ctx: Context, processes: int | None) -> None:
    """Start the server in the background (pid file in run/, logs in log/)."""
    root = ctx.existing_root()
    _ = ctx.settings    # a broken mailctl.toml fails here, before anything starts
    pid = background.start(root, processes)
    done(f"mailctl started (pid {pid})")


@click.command("stop")
@pass_ctx
def stop(ctx: Context) -> None:
    """Stop the background server; messages in flight are finished first."""
    pid = background.stop(ctx.existing_root())
    if pid is None:
        raise MailError(f"mailctl is not running on {ctx.root.path}")
    done(f"mailctl stopped (pid {pid})")


@click.command("restart")
@processes_option
@pass_ctx
def restart(ctx: Context, processes: int | None) -> None:
    """Stop the server if it runs, then start it again."""
    root = ctx.existing_root()
    _ = ctx.settings    # a broken mailctl.toml fails here, before anything starts
    background.stop(root)
    pid = background.start(root, processes)
    done(f"mailctl restarted (pid {pid})")


@click.command("reload")
@pass_ctx
def reload(ctx: Context) -> None:
    """Re-read mailctl.toml and domains/ now (the server also does this on its own on change)."""
    control.request(ctx.existing_root(), "reload")
    done("configuration reloaded")


def _duration(seconds: int) -> str:
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


@click.command("status")
@json_option
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Show whether the server runs: listeners, uptime, connections, queue size, and whether
    the virus scanner (clamd) and the spam scanners (rspamd, spamd) answer."""
    reply = control.request(ctx.existing_root(), "status")
    reply.pop("ok", None)
    if as_json:
        emit_json(reply)
        return
    others = [str(pid) for pid in reply.get("processes", []) if pid != reply["pid"]]
    running = f"yes (pid {reply['pid']}, user {reply.get('user', '?')}"
    if others:
        users = sorted({p.get("user") or "?" for p in reply.get("serving", [])})
        running += f"; serving processes {', '.join(others)}" + (f" as {', '.join(users)}" if users else "")
    last = reply.get("last_exit")
    restarts = str(reply.get("restarts", 0)) + (f" (last: pid {last['pid']} {last['how']})" if last else "")
    fields({"running": running + ")", "uptime": _duration(reply["uptime_s"]),
            "connections": reply["connections"], "queue": reply["queue_size"],
            "restarts": restarts, "config problems": len(reply.get("config_problems", [])),
            "disk": _disk(reply.get("disk")), "antivirus": reply.get("antivirus", "unknown"),
            "spam scanners": reply.get("spam_scanners", "unknown")})
    for problem in reply.get("config_problems", []):
        click.echo(f"  {problem}")
    table(reply["listeners"], [("name", "Listener"), ("addresses", "Addresses"), ("tls", "TLS"),
                               ("connections", "Connections")])


def _disk(disk: dict | None) -> str:
    """Free space of the root's file system, and a warning below the reserve."""
    if not disk:
        return "unknown"
    mb = 1024 * 1024
    text = f"{disk['free_bytes'] / mb:.1f} MB free of {disk['total_bytes'] / mb:.1f} MB " \
           f"(reserve {disk['reserve_bytes'] / mb:.1f} MB)"
    if disk.get("read_only"):
        return text + "; WARNING: read-only, new mail is refused"
    if disk.get("below_reserve"):
        return text + "; WARNING: below the reserve, new mail is refused (452 4.3.1)"
    return text


# -- quickstart --------------------------------------------------------------------------

def _client_settings(hostname: str, ports: dict, user: str) -> list[tuple[str, str]]:
    rows = [("Incoming mail (IMAP)", f"{hostname} port {ports['imaps']}, SSL/TLS" if "imaps" in ports else ""),
            ("", f"or port {ports['imap']}, STARTTLS" if "imap" in ports else ""),
            ("Incoming mail (POP3)", f"{hostname} port {ports['pop3s']}, SSL/TLS" if "pop3s" in ports else ""),
            ("", f"or port {ports['pop3']}, STARTTLS" if "pop3" in ports else ""),
            ("Outgoing mail (SMTP)", f"{hostname} port {ports['submissions']}, SSL/TLS" if "submissions" in ports else ""),
            ("", f"or port {ports['submission']}, STARTTLS" if "submission" in ports else ""),
            ("Authentication", "normal password (PLAIN/LOGIN)"),
            ("User name", user),
            ("Inbound MX (SMTP)", f"{hostname} port {ports['smtp']}" if "smtp" in ports else "")]
    return [(k, v) for k, v in rows if v]


@click.command("quickstart")
@click.option("--domain", default="example.test", show_default=True, help="Demo domain to create.")
@click.option("--user", "local", default="demo", show_default=True, help="Local part of the demo account.")
@click.option("--hostname", default="localhost", show_default=True, help="Server host name.")
@click.option("--high-ports", is_flag=True, help="Use unprivileged ports (2525, 2587, 2465, 2143, 2993, 2110, "
              "2995); the default when not run as root.")
@click.option("--any-port", is_flag=True, hidden=True, help="Listen on 127.0.0.1 with free ports (tests).")
@pass_ctx
def quickstart(ctx: Context, domain: str, local: str, hostname: str, high_ports: bool, any_port: bool) -> None:
    """Create a mail root with a demo domain and account if none exists, print what a mail
    client needs, and serve in the foreground (unprivileged ports with --high-ports or when
    not root)."""
    from engine import demoroot, newroot, service
    root = ctx.root
    password = None
    address = f"{local}@{domain}"
    if not root.exists():
        demo = demoroot.create(root, domain, local, hostname, high_ports, any_port=any_port)
        address, password = demo.address, demo.password
        done(f"created mail root {root.path} with domain {domain} and account {address}")
        for note in newroot.give_to_serving_user(root):
            done(f"  {note}")
    cfg = ctx.settings

    def ready(svc) -> None:
        ports = {name: addrs[0][1] for name, addrs in svc.runtime.ports.items() if addrs}
        lines = ["", "Mail client settings", "--------------------"]
        for k, v in _client_settings(cfg.server.hostname, ports, address):
            lines.append(f"{k.ljust(22)}{v}")
        if password is not None:
            lines.append(f"{'Password'.ljust(22)}{password}   (shown once; change it with "
                         f"'mailctl account passwd {address}')")
        lines += ["", "Serving in the foreground; Ctrl-C stops. The certificate is self-signed: "
                      "accept it in the mail client."]
        click.echo("\n".join(lines))
        sys.stdout.flush()

    sys.exit(service.serve(root, ready=ready))


COMMANDS = [serve, start, stop, restart, reload, status, quickstart]
