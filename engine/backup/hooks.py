"""hooks/backup-completed and hooks/backup-failed: executables in the root that a
cron-driven backup runs afterwards (to copy the backup off-site, or to page someone)."""
from __future__ import annotations

import os
import subprocess

from ..root import Root

TIMEOUT = 300


def run_hook(root: Root, event: str, path: str, summary: str, status: str) -> str | None:
    """Run hooks/<event> if it is an executable file. Returns a problem line, or None."""
    hook = root.path / "hooks" / event
    if not hook.is_file() or not os.access(hook, os.X_OK):
        return None
    env = dict(os.environ, MAILCTL_ROOT=str(root.path), MAILCTL_BACKUP_PATH=path,
               MAILCTL_BACKUP_SUMMARY=summary, MAILCTL_BACKUP_STATUS=status)
    try:
        proc = subprocess.run([str(hook), path], env=env, cwd=root.path, capture_output=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"hooks/{event} failed: {e}"
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return f"hooks/{event} exited with {proc.returncode}: {tail[0]}"
    return None
