"""The Maildir++ store, written exactly as Dovecot writes it (DESIGN.md §4).

One account is one Maildir++ tree: INBOX is the top directory, folder "A/B" is ".A.B/"
with names in modified UTF-7. IMAP UIDs live in each folder's dovecot-uidlist (v3),
keyword letters in dovecot-keywords, quota in maildirsize. Dovecot, mutt and our own
processes may work on the same tree at once, so every change is an atomic rename, an
O_EXCL create or an O_APPEND of one line, and uidlist writes hold Dovecot's dotlock.

Every piece of the format lives in this package; callers import from here only:
  names     the tree's file names and modes, folder names, message file names, stamps
  content   reading message files (whole, header, sizes) and the CRLF form served
  uidlist   dovecot-uidlist (parsed incrementally, cached per process), UIDVALIDITY
  flags     flag letters in file names, dovecot-keywords
  quota     maildirsize
  recent    mailctl-recent: which session each message is \\Recent to
  modseq    mailctl-modseq: CONDSTORE's mod-sequences, and the expunges QRESYNC reports
  message   Message: one message file as a sync saw it
  staging   Staged and Delivered: tmp/ -> new/ or cur/, with group commit; commit_together
  sync      the sync of a folder (reused, patched or full) and its result, Synced
  tmpclean  crash leftovers in a folder's tmp/, deleted at a sync once 36 hours old
  folder    Folder: one folder's uidlist upkeep, messages, flags, reading and changes
  seenrecord  mailctl-seen.<hash>: a user's own \\Seen in a folder they do not own
  privateseen PrivateSeenFolder: such a folder as that user sees it (Dovecot's INDEXPVT)
  account   Maildir: the account's folders, subscriptions, quota and delivery
  metadata  METADATA entries (mailctl-metadata, mailctl-server-metadata)
  specialuse  the special uses CREATE gave folders (mailctl-specialuse)
"""
from __future__ import annotations

from .account import FolderInfo, Maildir
from .content import read_header, read_message, to_crlf
from .flags import FLAG_LETTERS, FORWARDED, MAX_KEYWORDS, letters_of, normalize_flags, parse_keywords, read_keywords
from .folder import SAVE_SIZES_BATCH, Folder
from .message import Message, current_message
from .names import (DEFAULT_FOLDERS, DIR_MODE, FILE_MODE, INBOX, KEYWORDS, MAILDIRSIZE, MTIME_SLACK, RECENT_CLAIMS,
                    SEPARATOR, SPECIAL_USE, SUBSCRIPTIONS, UIDLIST, UIDVALIDITY, canonical_name, folder_stamp)
from .quota import MAILDIRSIZE_MAX, MAILDIRSIZE_STALE_SECS, Quota
from .metadata import MAX_ENTRIES as METADATA_MAX_ENTRIES, MAX_VALUE as METADATA_MAX_VALUE
from .metadata import TooLarge as MetadataTooLarge, TooMany as MetadataTooMany
from .metadata import change as change_metadata, check_entry as check_metadata_entry
from .metadata import file_of as metadata_file, lookup as lookup_metadata, read as read_metadata
from .privateseen import PrivateSeenFolder
from .recent import claim as claim_recent
from .seenrecord import SeenSet, file_name as seen_record_file, parse as parse_seen_record
from .specialuse import SPECIAL_USE_FILE, check_uses as check_special_uses
from .staging import Delivered, Staged, commit_together
from .sync import Synced
from .tmpclean import set_tmp_max_age
from .uidlist import ParsedUidList, parse_uidlist

__all__ = [
    # the account, its folders and messages
    "Maildir", "Folder", "FolderInfo", "Message", "Staged", "Delivered", "Synced", "Quota",
    # several staged messages of one folder made visible as one step (MULTIAPPEND)
    "commit_together",
    # names and modes in the tree
    "INBOX", "SEPARATOR", "DEFAULT_FOLDERS", "SPECIAL_USE", "UIDLIST", "KEYWORDS", "UIDVALIDITY",
    "MAILDIRSIZE", "SUBSCRIPTIONS", "RECENT_CLAIMS", "DIR_MODE", "FILE_MODE", "canonical_name",
    # a folder's stamp: unchanged while new/, cur/ and the uidlist are
    "MTIME_SLACK", "folder_stamp", "SAVE_SIZES_BATCH",
    # a user's own \\Seen in a folder they do not own (INDEXPVT), and its record's file name
    "PrivateSeenFolder", "seen_record_file", "parse_seen_record", "SeenSet",
    # flags and dovecot-keywords
    "FLAG_LETTERS", "FORWARDED", "MAX_KEYWORDS", "normalize_flags", "read_keywords", "parse_keywords",
    "letters_of",
    # METADATA (RFC 5464): entries of the server and of each folder, in files of ours
    "METADATA_MAX_ENTRIES", "METADATA_MAX_VALUE", "MetadataTooLarge", "MetadataTooMany",
    "change_metadata", "check_metadata_entry", "metadata_file", "lookup_metadata", "read_metadata",
    # special uses given with CREATE (RFC 6154) and their file
    "check_special_uses", "SPECIAL_USE_FILE",
    # \Recent: the session that first sees a message claims it
    "claim_recent",
    # dovecot-uidlist and maildirsize as other readers (the backup) see them
    "ParsedUidList", "parse_uidlist", "MAILDIRSIZE_MAX", "MAILDIRSIZE_STALE_SECS",
    # a message under its file's name now (CONDSTORE's checks)
    "current_message",
    # reading message files
    "read_message", "read_header", "to_crlf",
    # how old a file a crash left in tmp/ must be before a sync deletes it (settings)
    "set_tmp_max_age",
]
