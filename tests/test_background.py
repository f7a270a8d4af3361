"""engine.background: stopping a daemon returns only once it is gone, through the control
socket or, when that does not answer, SIGTERM to the pid file (start: test_service_lifecycle.py)."""
from __future__ import annotations

import re

from engine import background
from engine.locks import pid_alive
from helpers_server import mailctl, make_root


def _start(root) -> int:
    out = mailctl(root, "start")
    assert out.returncode == 0, out.stdout + out.stderr
    return int(re.search(r"pid (\d+)", out.stdout).group(1))


def test_stop_waits_until_the_server_is_gone_with_or_without_its_control_socket(tmp_path):
    root = make_root(tmp_path, settings={"queue.offline": True})
    pid = _start(root)
    try:
        assert background.running_pid(root) == pid
        assert background.stop(root) == pid
        assert not pid_alive(pid)
        assert background.running_pid(root) is None and background.stop(root) is None

        pid = _start(root)
        (root.run_dir / "control.sock").unlink()      # nothing answers: the pid file is used
        assert background.status_if_up(root) is None
        assert background.stop(root) == pid
        assert not pid_alive(pid)
    finally:
        if pid_alive(pid):
            mailctl(root, "stop")
