"""Access control lists on folders (RFC 4314), kept as Dovecot keeps them.

    rights.py     the right letters, rights strings as IMAP sends them, the obsolete c/d
    aclfile.py    the `dovecot-acl` file of a folder: parse (garbage lines skipped and
                  logged), write (atomic), whose rights a user has (`rights_for`)
    places.py     where shared and public folders live: the public trees under
                  ROOT/public/<domain>/, the index of shared folders (state/shared-folders)
    edit.py       changing one identifier's rights (SETACL, mailctl), the index kept in step
    admin.py      what `mailctl mailbox share` and `mailctl public` do

The model: a folder's rights are computed by aclfile.rights_for, and every IMAP command
that touches a mailbox asks imap/access.py, which asks rights_for; nothing else decides.
"""
