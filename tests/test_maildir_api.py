"""engine.maildir is a package whose __init__ is its whole public API: callers import
from it, never from its modules."""
import __future__
import inspect
import re
from pathlib import Path

import engine.maildir

# What callers use today (and the parsers the backup shares); a name that goes missing
# from the package, or a new one not listed in __all__, fails here.
PUBLIC = {
    "Maildir", "Folder", "FolderInfo", "Message", "Staged", "Delivered", "Synced", "Quota",
    "INBOX", "SEPARATOR", "DEFAULT_FOLDERS", "SPECIAL_USE", "UIDLIST", "KEYWORDS", "UIDVALIDITY",
    "MAILDIRSIZE", "SUBSCRIPTIONS", "RECENT_CLAIMS", "DIR_MODE", "FILE_MODE", "canonical_name",
    "MTIME_SLACK", "folder_stamp", "SAVE_SIZES_BATCH",
    "FLAG_LETTERS", "FORWARDED", "MAX_KEYWORDS", "normalize_flags", "read_keywords", "parse_keywords",
    "letters_of", "claim_recent", "current_message",
    "ParsedUidList", "parse_uidlist", "MAILDIRSIZE_MAX", "MAILDIRSIZE_STALE_SECS",
    "read_message", "read_header", "to_crlf",
    "set_tmp_max_age",
    "check_special_uses", "SPECIAL_USE_FILE", "commit_together",
    "PrivateSeenFolder", "SeenSet", "parse_seen_record", "seen_record_file",
    "METADATA_MAX_ENTRIES", "METADATA_MAX_VALUE", "MetadataTooLarge", "MetadataTooMany",
    "change_metadata", "check_metadata_entry", "metadata_file", "lookup_metadata", "read_metadata",
}
ROOT = Path(__file__).resolve().parent.parent


def test_all_lists_exactly_the_public_api():
    assert sorted(engine.maildir.__all__) == sorted(PUBLIC)
    assert len(engine.maildir.__all__) == len(set(engine.maildir.__all__))


def test_every_exported_name_imports():
    namespace: dict = {}
    exec("from engine.maildir import *", namespace)
    assert PUBLIC <= namespace.keys()
    for name in PUBLIC:
        assert getattr(engine.maildir, name) is namespace[name]


def test_the_package_exports_nothing_it_does_not_list():
    public = {name for name, value in vars(engine.maildir).items()
              if not name.startswith("_") and not inspect.ismodule(value)
              and not isinstance(value, __future__._Feature)}
    assert public == PUBLIC


def test_callers_do_not_reach_into_the_package_modules():
    """Outside engine/maildir/, only the package itself is imported."""
    inner = re.compile(r"(from\s+(engine|\.+)\.?maildir\.\w+\s+import|import\s+engine\.maildir\.\w+"
                       r"|from\s+(engine\.|\.+)maildir\s+import\s+(names|content|uidlist|flags|quota|message"
                       r"|staging|sync|folder|account|tmpclean|recent)\b)")
    offenders = []
    for top in ("engine", "mailctl"):
        for path in (ROOT / top).rglob("*.py"):
            if "maildir" in path.relative_to(ROOT).parts[1:2]:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if inner.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
