"""The keys a domain file (domains/<name>.toml) may hold, with the check each value
passes and what the administrator is told it should be. engine/directory.py reads the
files with them; a per-domain switch of a new feature goes in DOMAIN_KEYS."""
from __future__ import annotations

import re

from . import foldernames, sendlimits_settings
from .errors import InvalidInput

LIST_MODES = ("public", "members", "announce")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_folder_name(v):
    try:
        return isinstance(v, str) and foldernames.split(v, new=True) != ["INBOX"]
    except InvalidInput:
        return False


def _is_signature(v):
    return isinstance(v, str) and len(v) <= 16 * 1024 and "\0" not in v


SIGNATURE_KEYS = {
    "signature_text": (_is_signature, "text of at most 16 KiB (%NAME% and %ADDRESS% are replaced)"),
    "signature_html": (_is_signature, "HTML of at most 16 KiB (\"\" = the text, made HTML)"),
}


def _is_strlist(v):
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# key: (check, expectation)
DOMAIN_KEYS = {
    "enabled": (lambda v: isinstance(v, bool), "true or false"),
    "domain_aliases": (_is_strlist, "a list of domain names"),
    "catch_all": (lambda v: isinstance(v, str), "an address or \"\""),
    "max_message_size_mb": (lambda v: _is_num(v) and v >= 0, "a number of MB, 0 or more"),
    "max_accounts": (lambda v: _is_int(v) and v >= 0, "a whole number, 0 or more"),
    "default_quota_mb": (lambda v: _is_int(v) and v >= 0, "a whole number of MB, 0 or more"),
    "greylisting": (lambda v: isinstance(v, bool), "true or false"),
    "antivirus": (lambda v: isinstance(v, bool), "true or false"),
    "spam_scan": (lambda v: isinstance(v, bool), "true or false"),
    "attachment_blocking": (lambda v: isinstance(v, bool), "true or false"),       # [attachments] for this domain
    "attachment_action": (lambda v: v in ("replace", "refuse"), "\"replace\" or \"refuse\""),
    "spam_scoring": (lambda v: isinstance(v, bool), "true or false"),
    "spam_mark_score": (lambda v: _is_num(v) and 0 < v <= 1000, "a score above 0, at most 1000"),
    "spam_reject_score": (lambda v: _is_num(v) and 0 <= v <= 1000, "a score from 0 (never) to 1000"),
    "mirror": (lambda v: v == "" or (isinstance(v, str) and re.fullmatch(r"[^@\s\"<>,;]{1,64}@[^@\s\"<>,;]{1,253}", v)
                                     is not None), "an address (a copy of all its mail goes there) or \"\""),
    **SIGNATURE_KEYS,
    "signature_mode": (lambda v: v in ("if_none", "overwrite", "append"),
                       "\"if_none\" (when the account has none), \"overwrite\" or \"append\" (a disclaimer)"),
    "signature_replies": (lambda v: isinstance(v, bool), "true or false (replies get the signature too)"),
    "signature_local": (lambda v: isinstance(v, bool), "true or false (mail to local recipients only gets it too)"),
    "junk_folder": (_is_folder_name, "a folder name other than INBOX, like \"Spam\" (its spam goes there, and "
                                     "what users move into or out of it is learned)"),
}
TABLES = ("accounts", "aliases", "lists")
ACCOUNT_KEYS = {
    "password": (lambda v: isinstance(v, str), "a password hash string"),
    "name": (lambda v: isinstance(v, str) and not _CONTROL.search(v), "a string without line breaks or control "
                                                                          "characters"),
    "quota_mb": (lambda v: _is_int(v) and v >= 0, "a whole number of MB, 0 or more (0 = unlimited)"),
    "enabled": (lambda v: isinstance(v, bool), "true or false"),
    "forward": (_is_strlist, "a list of addresses"),
    "forward_keep_copy": (lambda v: isinstance(v, bool), "true or false"),
    "spam_filter": (lambda v: isinstance(v, bool), "true or false"),
    **SIGNATURE_KEYS,
    **sendlimits_settings.ACCOUNT_KEYS,
}
ALIAS_KEYS = {
    "targets": (_is_strlist, "a list of addresses"),
    "enabled": (lambda v: isinstance(v, bool), "true or false"),
}
LIST_KEYS = {
    "mode": (lambda v: v in LIST_MODES, "one of " + ", ".join(LIST_MODES)),
    "sender": (lambda v: isinstance(v, str), "an address or \"\""),
    "members": (_is_strlist, "a list of addresses"),
    "enabled": (lambda v: isinstance(v, bool), "true or false"),
    "require_auth": (lambda v: isinstance(v, bool), "true or false"),
}
