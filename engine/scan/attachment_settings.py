"""mailctl.toml's [attachments] section (engine/settings.py SCHEMA holds it by this name):
blocking attachments by file name extension, inside zip archives and by MIME type
(engine/scan/attachments.py decides, engine/accept/attachments.py acts)."""
from __future__ import annotations

from ..settingkeys import Key, in_range, one_of

# What Windows runs (or opens with a script host or an installer) on a double-click.
EXECUTABLES = [
    ".exe", ".scr", ".com", ".pif", ".bat", ".cmd", ".cpl", ".msi", ".msp", ".msc", ".jar",
    ".js", ".jse", ".vbs", ".vbe", ".wsf", ".wsh", ".ws", ".hta", ".ps1", ".psm1", ".lnk",
    ".reg", ".inf", ".scf", ".gadget", ".application", ".appref-ms", ".iso", ".img", ".vhd",
    ".vhdx", ".chm", ".url", ".settingcontent-ms", ".dll", ".sys",
]
MIME_TYPES = [
    "application/x-msdownload", "application/x-msdos-program", "application/x-dosexec",
    "application/x-ms-installer", "application/x-msi", "application/hta", "application/x-ms-shortcut",
    "application/java-archive", "application/x-sh",
]


def extension_list(v):
    if not all(isinstance(e, str) and e.startswith(".") and len(e) > 1 and "/" not in e for e in v):
        return "must be a list of extensions starting with a dot, like \".exe\""
    return None


def mime_type_list(v):
    if not all(isinstance(t, str) and t.count("/") == 1 and " " not in t for t in v):
        return "must be a list of MIME types, like \"application/x-msdownload\""
    return None


KEYS = {
    "enabled": Key(False, bool, "block attachments by file name extension, inside zip archives and by MIME type "
                   "in mail coming in on port 25 (hMailServer's attachment blocking); off per domain with "
                   "attachment_blocking = false in its domain file"),
    "action": Key("replace", str, "what a blocked attachment gets: 'replace' (a short text part named "
                  "<name>.txt says what was removed and why; every other byte of the message stays) or 'refuse' "
                  "(554 5.7.1 naming the file; nothing is kept); per domain: attachment_action in its domain file "
                  "(one recipient's domain asking 'refuse' refuses the message)", one_of("replace", "refuse")),
    "extensions": Key(EXECUTABLES, list, "file name extensions blocked (case-insensitive; the last extension "
                      "counts, trailing dots and spaces ignored, so invoice.pdf.exe is an .exe)", extension_list),
    "mime_types": Key(MIME_TYPES, list, "MIME types blocked whatever the file's name", mime_type_list),
    "look_in_zip": Key(True, bool, "look at the names inside zip archives (one level deep: the archive's list of "
                       "names only, nothing is extracted)"),
    "max_zip_entries": Key(1000, int, "a zip archive with more entries is not listed (unreadable_zip decides)",
                           in_range(1, 65535)),
    "unreadable_zip": Key("remove", str, "a zip archive that cannot be listed (corrupt, or over max_zip_entries): "
                          "'remove' it (as a blocked attachment) or 'keep' it", one_of("remove", "keep")),
    "encrypted_zip": Key("keep", str, "a zip archive with encrypted entries (their names are still checked): "
                         "'keep' it or 'remove' it (its content cannot be examined)", one_of("keep", "remove")),
    "max_parts": Key(1000, int, "a message with more MIME parts is refused (554 5.7.1): past it the parts "
                     "would not all be examined", in_range(10, 100000)),
    "submission": Key(False, bool, "also block attachments in mail from authenticated users, trusted networks "
                      "and this machine (pickup/, sendmail, mailctl send); by default only mail coming in from "
                      "outside on port 25 is checked"),
}
