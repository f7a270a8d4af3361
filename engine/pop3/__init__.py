"""POP3 (RFC 1939) access server over the Maildir++ store."""
