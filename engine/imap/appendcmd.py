"""APPEND (RFC 3501 §6.3.11) with MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469).

One APPEND may carry several messages, each with its flags and date-time, each a
literal (literal8, RFC 3516) or a CATENATE list of TEXT literals and IMAP URLs of
messages or parts this user can read. All of them are stored or none: every message is
staged in tmp/ (fsync'd) first, the quota checked for all of them together, and then
they are linked and numbered in one step (maildir.commit_together), so another session
sees all of them appear at once. A failure anywhere (a bad literal, a bad URL, the quota,
a full disk, the client gone mid-way) leaves the mailbox as it was.

The session's reader has already written large literals to files in tmp/ (spool.Spool);
parser.tokenize puts them in the arguments where their literal stood.
"""
from __future__ import annotations

from .. import maildir as store, memtrim, nofollow
from ..acl import rights as rightsmod
from ..errors import InvalidInput, NotFound, QuotaExceeded
from ..spool import Spool
from . import access, fetch as fetchmod, imapurl, junklearn, mime, rev2, transfer
from .commandbase import CommandBase, state
from .condstore import uid_set
from .errors import CommandError, bad, no
from .messages import QUOTA_EXCEEDED
from .parser import Atom, Literal, Literal8, as_atom, as_text

_LITERALS = (Literal, Literal8, Spool)


class Incoming:
    """One message of an APPEND: its flags, date and content (a literal in memory, a spooled
    file, or a CATENATE list of ("TEXT", literal) and ("URL", text) parts)."""
    __slots__ = ("flags", "date", "data", "parts")

    def __init__(self, flags, date, data, parts):
        self.flags, self.date, self.data, self.parts = flags, date, data, parts


def parse_messages(args: list) -> list[Incoming]:
    """The append-message list after the mailbox: 1*([flags] [date-time] (literal / CATENATE (...)))."""
    out: list[Incoming] = []
    i = 0
    while i < len(args):
        flags: list[str] = []
        date = None
        if isinstance(args[i], list):
            flags = [as_atom(f, "flag") for f in args[i]]
            i += 1
        if i < len(args) and isinstance(args[i], bytes) and not isinstance(args[i], _LITERALS):
            date = fetchmod.parse_internaldate(as_text(args[i], "date-time"))     # quoted
            i += 1
        if i >= len(args):
            raise bad("APPEND: each message must be a literal")
        token = args[i]
        if isinstance(token, _LITERALS):
            out.append(Incoming(flags, date, token, None))
            i += 1
        elif isinstance(token, Atom) and token.upper() == "CATENATE":
            if i + 1 >= len(args) or not isinstance(args[i + 1], list) or not args[i + 1]:
                raise bad("CATENATE needs a list of TEXT and URL parts")
            out.append(Incoming(flags, date, None, parse_parts(args[i + 1])))
            i += 2
        else:
            raise bad("APPEND: each message must be a literal")
    if not out:
        raise bad("APPEND needs a mailbox and a message literal")
    return out


def parse_parts(tokens: list) -> list[tuple[str, object]]:
    """CATENATE's cat-part list: TEXT literal / URL astring, in pairs."""
    if len(tokens) % 2:
        raise bad("CATENATE parts come in pairs: TEXT literal or URL url")
    parts: list[tuple[str, object]] = []
    for kind, value in zip(tokens[::2], tokens[1::2]):
        word = as_atom(kind, "CATENATE part").upper()
        if word == "TEXT":
            if not isinstance(value, _LITERALS):
                raise bad("CATENATE TEXT must be a literal")
            parts.append(("TEXT", value))
        elif word == "URL":
            if isinstance(value, (list, Spool)):
                raise bad("CATENATE URL must be a string")
            parts.append(("URL", as_text(value, "URL")))
        else:
            raise bad(f"Unknown CATENATE part {word[:20]}")
    return parts


def _size(data) -> int:
    return data.size if isinstance(data, Spool) else len(data)


class AppendCommand(CommandBase):
    @state("auth")
    async def cmd_APPEND(self, tag, args):
        if len(args) < 2:
            raise bad("APPEND needs a mailbox and a message literal")
        box = self.mailbox(args[0])
        messages = parse_messages(list(args[1:]))
        rights = self.need(box, "i")
        limit = self.append_limit()
        for m in messages:
            if m.parts is None:
                size = _size(m.data)
                if not size:
                    raise no("Cannot save an empty message")
                if not limit or size > limit:
                    raise no(f"[TOOBIG] Message larger than the APPEND limit of {limit} bytes")
            # flags the user has no right to set are not stored (RFC 4314 §4)
            m.flags = rightsmod.storable_flags([f for f in m.flags if f.lower() != "\\recent"], rights)
        folder = await self.open_target(box)
        for m in messages:
            if m.parts is not None:          # the parts read (off the event loop), each URL checked
                m.data = await self.blocking(self._catenate, m.parts, limit)
        try:
            delivered = await self.blocking(self._store_all, folder, box, messages)
        except QuotaExceeded:
            raise no(QUOTA_EXCEEDED) from None
        uidvalidity = await self.blocking(folder.uidvalidity)
        await self.announce_changes()
        return f"[APPENDUID {uidvalidity} {uid_set([d.uid for d in delivered])}] APPEND completed"

    def _store_all(self, folder, box, messages: list[Incoming]) -> list[store.Delivered]:
        """Every message staged in tmp/, the quota checked for all, then all committed as
        one step; on any failure nothing stays (staged files are removed). Into Junk, they
        are put up for learning as spam."""
        delivered = self._commit_all(folder, box.name, messages)
        junklearn.put_up(self, junklearn.append_kind(self, box), ((d.path, d.path.lstat().st_size) for d in delivered))
        return delivered

    def _commit_all(self, folder, name: str, messages: list[Incoming]) -> list[store.Delivered]:
        md = folder.maildir          # the owner's, for a shared or public folder
        staged: list[store.Staged] = []
        try:
            for m in messages:
                data = m.data
                if isinstance(data, Spool) and data.exact:   # a spooled literal8: as a small one is
                    data = Literal8(nofollow.read_bytes(data.path))
                    memtrim.note(len(data))
                if isinstance(data, Spool):
                    staged.append(md.stage_file(data.path, data.size, data.vsize, name, m.flags, m.date,
                                                check_quota=False))
                    continue
                if isinstance(data, Literal8):     # binary parts go in base64: a Maildir file holds lines
                    data = transfer.storable(data)
                staged.append(md.stage(data.replace(b"\r\n", b"\n"), name, m.flags, m.date, check_quota=False))
            md.check_quota(sum(s.size for s in staged))
            if any(m.flags for m in messages):   # into cur/, not new/: recent all the same
                folder.keep_arrivals_recent()
            if len(staged) == 1:
                return [staged[0].commit()]      # shares the group commit with deliveries
            return store.commit_together(staged)
        except BaseException:
            for s in staged:
                s.abort()
            raise

    def _catenate(self, parts: list[tuple[str, object]], limit: int) -> bytes:
        """The message CATENATE's parts make (CRLF lines); NO [BADURL url] for a URL this user
        cannot read, NO [TOOBIG] past the APPEND limit."""
        out: list[bytes] = []
        total = 0
        binary = False
        for kind, value in parts:
            if kind == "TEXT":
                binary |= isinstance(value, Literal8) or (isinstance(value, Spool) and value.exact)
                if isinstance(value, Spool):
                    data = nofollow.read_bytes(value.path)
                    data = data if value.exact else store.to_crlf(data)
                else:
                    data = bytes(value)
            else:
                data = self._url_bytes(value)
            total += len(data)
            if not limit or total > limit:
                raise no(f"[TOOBIG] Message larger than the APPEND limit of {limit} bytes")
            out.append(data)
        message = b"".join(out)
        memtrim.note(len(message))
        if not message:
            raise no("Cannot save an empty message")
        return Literal8(message) if binary else Literal(message)

    def _url_bytes(self, url: str) -> bytes:
        """The bytes a CATENATE URL names, read from a mailbox of this user."""
        bad_url = no(f"[BADURL {imapurl.echo(url)}] The URL does not name a message part you can read")
        try:
            ref = imapurl.parse(url)
        except imapurl.BadUrl:
            raise bad_url from None
        if ref.user is not None and ref.user.lower() not in self._own_names():
            raise bad_url                    # another user's mailbox, or another server's
        try:
            if ref.mailbox is None:
                if self.selected is None:
                    raise bad_url
                folder = self.selected.folder
            else:                            # any namespace, where this user may read
                box = self.mailbox(ref.mailbox, rev2.REV1)   # a URL's name is modified UTF-7 (imapurl.py)
                if "r" not in access.rights_of(box, self.account.address):
                    raise bad_url
                folder = box.maildir.folder(box.name)
            if ref.uidvalidity is not None and ref.uidvalidity != folder.uidvalidity():
                raise bad_url
            msg = next((m for m in folder.sync(sizes=False) if m.uid == ref.uid), None)
            if msg is None:
                raise bad_url
            data = store.to_crlf(folder.read(msg))
        except (NotFound, InvalidInput, FileNotFoundError, CommandError):
            raise bad_url from None          # no such mailbox or message, or a name SELECT refuses too
        root = mime.Part(data, 0, len(data))
        if ref.numbers:
            part = mime.find_part(root, list(ref.numbers))
            if part is None or (ref.text in ("HEADER", "TEXT") and part.message is None):
                raise bad_url                # no such part, or no message inside it
        data = mime.section_bytes(root, list(ref.numbers), ref.text, None)
        if ref.partial is not None:
            offset, length = ref.partial
            data = data[offset:] if length is None else data[offset:offset + length]
        return data

    def _own_names(self) -> set[str]:
        """The user part an absolute URL of ours may carry: the login address or its local part."""
        address = self.account.address.lower()
        return {address, address.partition("@")[0]}
