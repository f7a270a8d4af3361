"""METADATA (RFC 5464): GETMETADATA and SETMETADATA on the server's entries (mailbox "")
and on each mailbox's, private (/private/...) and shared (/shared/...). The store and
its limits are maildir/metadata.py; here are the command syntax and the replies.

    GETMETADATA [(MAXSIZE n DEPTH 0|1|infinity)] mailbox (entry ...) | entry
    SETMETADATA mailbox (entry value|NIL ...)

A mailbox's /private/specialuse (RFC 6154 §4) is its special-use attributes, read only
here: they are given with CREATE ... (USE (...)).
"""
from __future__ import annotations

from .. import maildir as store
from ..errors import InvalidInput, NotFound
from .commandbase import CommandBase, state
from .errors import bad, no
from .parser import Atom, ParseError, as_atom, as_text, number
from .response import astring

SPECIAL_USE_ENTRY = "/private/specialuse"
MAX_REQUESTED = 100           # entries one GETMETADATA may name


def parse_get_options(tokens: list) -> tuple[int | None, int | None]:
    """(maxsize, depth) of GETMETADATA's option list; depth None is infinity."""
    if len(tokens) % 2:
        raise ParseError("GETMETADATA options come in pairs (MAXSIZE n, DEPTH d)")
    maxsize, depth = None, 0
    for i in range(0, len(tokens), 2):
        word = as_atom(tokens[i], "GETMETADATA option").upper()
        value = as_atom(tokens[i + 1], f"{word[:20]} value")
        if word == "MAXSIZE":
            maxsize = number(value, "MAXSIZE")
        elif word == "DEPTH":
            if value.lower() == "infinity":
                depth = None
            elif value in ("0", "1"):
                depth = int(value)
            else:
                raise ParseError("DEPTH must be 0, 1 or infinity")
        else:
            raise ParseError(f"Unknown GETMETADATA option {word[:20]}")
    return maxsize, depth


def parse_entries(token, settable: bool) -> str:
    """One entry name, checked, in its kept form (BAD when it is no entry name)."""
    try:
        return store.check_metadata_entry(as_text(token, "metadata entry name"), settable)
    except InvalidInput as e:
        raise ParseError(str(e)) from None


def parse_changes(tokens) -> list[tuple[str, bytes | None]]:
    """SETMETADATA's list of entry-value pairs; NIL removes an entry."""
    if not isinstance(tokens, list) or not tokens or len(tokens) % 2:
        raise ParseError("SETMETADATA needs a list of entry and value pairs")
    changes = []
    for i in range(0, len(tokens), 2):
        entry, value = parse_entries(tokens[i], settable=True), tokens[i + 1]
        if isinstance(value, list):
            raise ParseError("a metadata value is a string or NIL")
        if isinstance(value, Atom):
            value = None if value.upper() == "NIL" else value.encode("utf-8")
        changes.append((entry, value))
    return changes


def value_bytes(value: bytes | None) -> bytes:
    """NIL, else a literal (literal8 when it holds a NUL, RFC 5464 §5), as Dovecot sends."""
    if value is None:
        return b"NIL"
    return (b"~" if b"\0" in value else b"") + b"{%d}\r\n" % len(value) + value


class MetadataCommands(CommandBase):
    def _mailbox(self, token) -> str:
        text = as_text(token, "mailbox name")
        return "" if text == "" else self.folder_name(text)

    @state("auth")
    async def cmd_GETMETADATA(self, tag, args):
        args = list(args)
        maxsize, depth = parse_get_options(args.pop(0)) if args and isinstance(args[0], list) else (None, 0)
        if len(args) != 2:
            raise bad("GETMETADATA needs a mailbox and entry names")
        mailbox = self._mailbox(args[0])
        names = args[1] if isinstance(args[1], list) else [args[1]]
        if not names or len(names) > MAX_REQUESTED:
            raise bad(f"GETMETADATA needs 1 to {MAX_REQUESTED} entry names")
        keys = [parse_entries(n, settable=False) for n in names]
        try:
            found = await self.blocking(self._lookup, mailbox, keys, depth)
        except NotFound:
            raise no(f"[NONEXISTENT] Mailbox {mailbox!r} does not exist") from None
        parts, longest = [], 0
        for key, value in found:
            if value is not None and maxsize is not None and len(value) > maxsize:
                longest = max(longest, len(value))
                continue
            parts.append(astring(key) + b" " + value_bytes(value))
        if parts:
            await self.send(b"* METADATA " + self.rev.mailbox(mailbox) + b" (" + b" ".join(parts) + b")\r\n")
        return (f"[METADATA LONGENTRIES {longest}] " if longest else "") + "GETMETADATA completed"

    def _lookup(self, mailbox: str, keys: list[str], depth) -> list[tuple[str, bytes | None]]:
        entries = store.read_metadata(store.metadata_file(self.maildir, mailbox))
        if mailbox:
            uses = self._special_use(mailbox)
            if uses:
                entries[SPECIAL_USE_ENTRY] = uses.encode()
        out, seen = [], set()
        for key in keys:
            for found in store.lookup_metadata(entries, key, depth):
                if found[0] not in seen:
                    seen.add(found[0])
                    out.append(found)
        return out

    def _special_use(self, mailbox: str) -> str | None:
        tree = self.maildir.cached_listing() or self.maildir.listing()
        return next((f.special_use for f in tree.folders if f.name == mailbox), None)

    @state("auth")
    async def cmd_SETMETADATA(self, tag, args):
        if len(args) != 2:
            raise bad("SETMETADATA needs a mailbox and a list of entries and values")
        mailbox = self._mailbox(args[0])
        changes = parse_changes(args[1])
        if any(key == SPECIAL_USE_ENTRY for key, _ in changes) and mailbox:
            raise no("[NOPERM] A mailbox's special use is given with CREATE ... (USE (...))")
        try:
            await self.blocking(self._change, mailbox, changes)
        except NotFound:
            raise no(f"[NONEXISTENT] Mailbox {mailbox!r} does not exist") from None
        except store.MetadataTooLarge:
            raise no(f"[METADATA MAXSIZE {store.METADATA_MAX_VALUE}] Metadata value too large") from None
        except store.MetadataTooMany:
            raise no("[METADATA TOOMANY] Too many metadata entries") from None
        return "SETMETADATA completed"

    def _change(self, mailbox: str, changes) -> None:
        store.change_metadata(store.metadata_file(self.maildir, mailbox), changes)
