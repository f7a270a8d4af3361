"""One server per port (issue 12): a second `mailctl serve` on another root with the same
ports refuses to start with one line naming the port and the process that holds it, and
the first keeps serving its own accounts."""
from __future__ import annotations

import smtplib
import subprocess
import sys

from helpers_server import REPO, make_root, serve_process, write_settings

PW = "secret-pass-1"


def test_a_second_server_on_the_same_ports_refuses_and_the_first_keeps_serving(tmp_path):
    first = make_root(tmp_path / "a", accounts={"alice@example.com": PW})
    second = make_root(tmp_path / "b", accounts={"bob@example.com": PW})
    with serve_process(first) as srv:
        write_settings(second, {f"listeners.{name}.port": port for name, port in srv.ports.items()})
        r = subprocess.run([sys.executable, "-m", "mailctl", "--root", str(second.path), "serve"],
                           capture_output=True, text=True, timeout=60, cwd=str(REPO),
                           env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        assert r.returncode == 1, r.stderr
        # (a foreground serve also logs to stderr: the error is its one "mailctl:" line)
        [error] = [line for line in r.stderr.splitlines() if line.startswith("mailctl:")]
        assert "Address already in use" in error and f"port {srv.ports['smtp']}" in error, error
        assert f"held by pid {srv.proc.pid}" in error and str(first.path) in error, error
        assert "Traceback" not in r.stderr
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as c:    # the first's, still
            assert c.sendmail("carol@example.org", ["alice@example.com"], b"Subject: x\r\n\r\nhi\r\n") == {}
        assert srv.proc.poll() is None
