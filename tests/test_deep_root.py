"""A mail root deeper than a unix socket address allows (107 bytes): the server starts, its
processes talk over run/control*.sock, and asking them over and over leaks no descriptor."""
from __future__ import annotations

import os

import pytest

from helpers_process import open_fds
from helpers_server import make_root, mailctl, serve_status, serve_process, wait_for_processes


@pytest.mark.parametrize("run_dir", ["in the root", "a link elsewhere"])
def test_a_deep_root_serves_and_its_control_sockets_leak_nothing(tmp_path, run_dir):
    deep = tmp_path / ("a-rather-long-folder-name-" * 5)
    deep.mkdir()
    root = make_root(deep, accounts={"alice@example.com": "secret-pass-1"},
                     settings={"server.processes": 2})
    if run_dir == "a link elsewhere":          # as /run/mailctl: run/ is the admin's to point
        elsewhere = deep / "elsewhere-run"
        root.run_dir.rename(elsewhere)
        root.run_dir.symlink_to(elsewhere)
    assert len(os.fsencode(str(root.run_dir / "control.1.sock"))) > 108
    with serve_process(root) as proc:
        pids = wait_for_processes(root, 2)
        for _ in range(3):                       # every process has opened what it keeps open
            serve_status(root)
        before = {pid: open_fds(pid) for pid in (proc.proc.pid, *pids)}
        for _ in range(25):                      # each one asks both serving processes
            assert len(serve_status(root)["serving"]) == 2
        after = {pid: open_fds(pid) for pid in before}
        assert after == before
        assert mailctl(root, "reload").returncode == 0
        assert proc.terminate(30) == 0
    assert not any(root.run_dir.glob("*.sock"))
