"""The server in the background (`mailctl start | stop | restart`): started as a daemon,
stopped through its control socket (else SIGTERM to the pid in run/), and waited for.

Named for what it does rather than `daemon.py`, which would read like python-daemon,
the package it uses to detach."""
from __future__ import annotations

import os
import signal
import sys
import time

from . import control
from .errors import MailError
from .locks import pid_alive
from .root import Root

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0


def running_pid(root: Root) -> int | None:
    """The pid in run/mailctl.pid when that process is alive."""
    from .service import PID_FILE    # engine.service loads every server; only stop needs it
    try:
        pid = int((root.run_dir / PID_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def status_if_up(root: Root) -> dict | None:
    """The server's status reply, or None when nothing answers on the control socket."""
    try:
        return control.request(root, "status", timeout=2)
    except MailError:
        return None


def start(root: Root, processes: int | None = None) -> int:
    """Fork a daemon (python-daemon) and wait until it answers on the control socket;
    returns its pid."""
    import daemon
    from . import service
    if status_if_up(root):
        raise MailError(f"mailctl is already running on {root.path}; see 'mailctl status'")
    root.log_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            err = open(root.log_dir / "daemon.err", "a")
            with daemon.DaemonContext(working_directory=str(root.path), umask=0o027, stderr=err,
                                      detach_process=True, prevent_core=True):
                code = service.serve(root, stderr=False, processes=processes)
        finally:
            os._exit(code)
    os.waitpid(child, 0)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        status = status_if_up(root)
        if status:
            return int(status["pid"])
        time.sleep(0.1)
    raise MailError(f"the server did not start within {START_TIMEOUT_S:.0f}s; see {root.log_dir}/mailctl.log "
                    f"and {root.log_dir}/daemon.err")


def stop(root: Root) -> int | None:
    """Ask the server to stop (control socket, else SIGTERM to the pid file) and wait
    until it is gone; returns its pid, or None when none was running."""
    pid = running_pid(root)
    try:
        reply = control.request(root, "stop", timeout=5)
        pid = int(reply.get("pid", pid or 0)) or pid
    except control.NotRunning:
        if pid is None:
            return None
        os.kill(pid, signal.SIGTERM)
    if pid is None:
        return None
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return pid
        time.sleep(0.1)
    raise MailError(f"server pid {pid} did not stop within {STOP_TIMEOUT_S:.0f}s; "
                    f"check {root.log_dir}/mailctl.log")
