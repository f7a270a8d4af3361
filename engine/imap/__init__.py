"""IMAP4rev1 (RFC 3501) access server over the Maildir++ store."""
