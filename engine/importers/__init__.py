"""Importing mail and accounts from other servers: Maildir trees (Dovecot, Courier,
the fs layout), mbox files, live IMAP servers, and Dovecot passwd-files.

Every mail import is idempotent and resumable: each message has a key (its
Message-ID, Date and size, else a hash of its bytes) recorded per account in
state/import/, so a second run imports nothing that is already there and an
interrupted run picks up where it stopped, with each message exactly once.
"""
