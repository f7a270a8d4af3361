"""`mailctl systemd-unit` prints a unit systemd accepts, which runs this root's server."""
from __future__ import annotations

import configparser
import shutil
import subprocess

import pytest

from conftest import run_cli


def _unit(root) -> str:
    result = run_cli(root, "systemd-unit")
    assert result.code == 0, result.err
    return result.out


def test_the_unit_runs_serve_for_this_root_restarts_on_failure_and_may_write_the_root_only(root):
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str
    unit.read_string(_unit(root))
    service = unit["Service"]
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].endswith(f"--root {root.path} serve")
    assert service["KillMode"] == "mixed"             # SIGTERM to the supervisor, which stops its children
    assert service["ReadWritePaths"] == str(root.path) and service["ProtectSystem"] == "strict"
    for capability in ("CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"):
        assert capability in service["CapabilityBoundingSet"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(root, tmp_path):
    path = tmp_path / "mailctl.service"
    path.write_text(_unit(root))
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=120)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if "mailctl.service" in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr
