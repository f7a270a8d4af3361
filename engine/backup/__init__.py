"""Backups of a mail root: create (full or incremental, directory or archive),
verify, restore (fresh or merge), list and prune. See create.py for how a live
root is copied consistently."""
from .create import BackupResult, create_backup, default_destination
from .restore import RestoreResult, restore_backup
from .destination import list_backups
from .verify import VerifyReport, verify_backup

__all__ = ["BackupResult", "create_backup", "default_destination", "RestoreResult", "restore_backup",
           "list_backups", "VerifyReport", "verify_backup"]
