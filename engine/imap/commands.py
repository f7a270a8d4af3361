"""The IMAP command set of a session (RFC 3501 §6 and the extensions in CAPABILITY):
one family per module, put together here, plus UID, which prefixes commands of
several families.

    general.py     CAPABILITY NOOP CHECK LOGOUT ID ENABLE NAMESPACE IDLE
    mailboxes.py   SELECT EXAMINE CREATE DELETE RENAME (UN)SUBSCRIBE LIST LSUB STATUS QUOTA
    metadatacmd.py GETMETADATA SETMETADATA
    appendcmd.py   APPEND            (MULTIAPPEND, CATENATE; its URLs: imapurl.py)
    messages.py    STORE COPY MOVE EXPUNGE CLOSE UNSELECT
    fetchcmd.py    FETCH             (items: fetch.py, streaming: bigfetch.py)
    searchcmd.py   SEARCH SORT THREAD (criteria: search.py; sort.py, thread.py, searchreturn.py)
    aclcmd.py      SETACL DELETEACL GETACL LISTRIGHTS MYRIGHTS (who may do what: access.py)
    session.py     LOGIN AUTHENTICATE STARTTLS, and dispatch

A new family (SORT and THREAD, say) is a CommandBase subclass in its own module, added
to Commands below. commandbase.py says what a handler returns and raises.
"""
from __future__ import annotations

from .aclcmd import AclCommands
from .appendcmd import AppendCommand
from .commandbase import state
from .errors import bad
from .fetchcmd import FetchCommand
from .general import GeneralCommands
from .mailboxes import MailboxCommands
from .messages import MessageCommands
from .metadatacmd import MetadataCommands
from .parser import Atom, as_atom, parse_sequence_set
from .searchcmd import SearchCommand


class Commands(GeneralCommands, MailboxCommands, MessageCommands, AppendCommand, FetchCommand, SearchCommand,
               MetadataCommands, AclCommands):
    @state("selected")
    async def cmd_UID(self, tag, args):
        if not args or not isinstance(args[0], Atom):
            raise bad("UID needs a command")
        sub = args[0].upper()
        rest = args[1:]
        if sub == "FETCH":
            return await self.cmd_FETCH(tag, rest, uid=True)
        if sub == "SEARCH":
            return await self.cmd_SEARCH(tag, rest, uid=True)
        if sub == "SORT":
            return await self.cmd_SORT(tag, rest, uid=True)
        if sub == "THREAD":
            return await self.cmd_THREAD(tag, rest, uid=True)
        if sub == "STORE":
            return await self.cmd_STORE(tag, rest, uid=True)
        if sub == "COPY":
            return await self.cmd_COPY(tag, rest, uid=True)
        if sub == "MOVE":
            return await self.cmd_MOVE(tag, rest, uid=True)
        if sub == "EXPUNGE":
            if len(rest) != 1:
                raise bad("UID EXPUNGE needs a UID set")
            text = as_atom(rest[0], "UID set")
            if text == "$":             # SEARCHRES (RFC 5182): the saved result
                saved = self.search_saved
                uids = sorted(saved[1]) if saved is not None and saved[0] is self.selected else []
                return await self.cmd_EXPUNGE(tag, [], uid_set=[(u, u) for u in uids])
            return await self.cmd_EXPUNGE(tag, [], uid_set=parse_sequence_set(text))
        raise bad(f"Unknown UID command {sub[:20]}")
