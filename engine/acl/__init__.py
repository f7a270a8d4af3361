r"""Access control lists on folders (RFC 4314), kept as Dovecot keeps them.

    rights.py     the right letters, rights strings as IMAP sends them, the obsolete c/d
    aclfile.py    the `dovecot-acl` file of a folder: parse (garbage lines skipped and
                  logged), write (atomic), whose rights a user has (`rights_for`)
    places.py     where shared and public folders live: the public trees under
                  ROOT/public/<domain>/, the index of shared folders (state/shared-folders)
    edit.py       changing one identifier's rights (SETACL, mailctl), the index kept in step
    admin.py      what `mailctl mailbox share` and `mailctl public` do

The model: a folder's rights are computed by aclfile.rights_for, and every IMAP command
that touches a mailbox asks imap/access.py, which asks rights_for; nothing else decides.

\Seen is per user on shared and public folders, as Dovecot keeps it with INDEXPVT: a
session of a user who does not own the folder works on maildir.PrivateSeenFolder
(imap/access.open_folder), whose \Seen comes from the user's own record in the folder
(maildir/seenrecord.py); the owner keeps \Seen in the file name. Changing it needs s.

Not done yet (so nothing here pretends to be):
- APPEND or COPY with \Seen INTO a shared folder writes it in the file name (the owner's),
  not the appending user's record.
- SUBSCRIBE to Shared/ and Public/ names is refused ([CANNOT]); LIST shows those folders.
- A folder renamed or made by hand with a dovecot-acl file is listed only after a SETACL
  or `mailctl mailbox share` on it (the index); by name it works at once.
- `mailctl config check` and the backup verifier do not look into ROOT/public yet.
"""
