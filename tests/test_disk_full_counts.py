"""The shared counters never fault on a full disk: their blocks are allocated when the file
is made (a sparse mapped file raised SIGBUS at the first new page, killing the server)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from engine.errors import MailError
from engine.sharedcounts import SharedCounts

from helpers_server import REPO
from helpers_smallfs import small_fs

TOUCH_EVERY_PAGE = """
import sys
from engine.sharedcounts import SharedCounts
counts = SharedCounts.attach(sys.argv[1], 1)
for i in range(20000):                 # keys spread over every page of the tables
    counts.opened("smtp", f"10.{i // 250}.{i % 250}.1")
    counts.hit(f"ip 10.{i // 250}.{i % 250}.1")
print("ok")
"""


@pytest.mark.parametrize("kind", ["tmpfs", "ext4"])
def test_counts_made_before_the_disk_fills_never_raise_sigbus(tmp_path, kind):
    with small_fs(tmp_path, kind, size_mb=8) as fs:
        counts = SharedCounts.create(fs.path)
        fs.fill()
        p = subprocess.run([sys.executable, "-c", TOUCH_EVERY_PAGE, str(fs.path)], cwd=REPO,
                           capture_output=True, timeout=120)
        assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
        assert p.stdout.strip() == b"ok"
        counts.close()


def test_counts_on_a_full_disk_fail_with_a_clear_error(tmp_path):
    with small_fs(tmp_path, "tmpfs", size_mb=4) as fs:
        fs.fill()
        with pytest.raises(MailError, match="free space"):
            SharedCounts.create(fs.path)
        assert not list(fs.path.glob("counts.shm*"))      # nothing half-made left behind
