"""The ACL commands (RFC 4314): SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS. Their
replies follow Dovecot's imap-acl plugin (rights letters in its order with c and d
added; "anyone" and "authenticated" may not be set over IMAP: `mailctl public add` and
`mailctl mailbox share` do that). Which mailbox a name means and what the session may do
there is access.py's; the file is engine/acl's."""
from __future__ import annotations

from dataclasses import replace

from ..acl import aclfile, edit, rights as rightsmod
from ..errors import InvalidInput, NotFound
from . import access
from .commandbase import CommandBase, state
from .errors import bad, no
from .parser import as_text
from .response import astring

LISTRIGHTS = '"" l r w s t p i e k x a c d'


class AclCommands(CommandBase):
    @state("auth")
    async def cmd_MYRIGHTS(self, tag, args):
        if len(args) != 1:
            raise bad("MYRIGHTS needs one mailbox name")
        box = self.mailbox(args[0])
        rights = access.rights_of(box, self.account.address)
        if not rights - {"p"} or not await self._acl_exists(box):
            raise no(f"[NONEXISTENT] Mailbox {box.wire!r} does not exist")
        await self._acl_reply(b"MYRIGHTS", box, rightsmod.imap_text(rights))
        return "Myrights completed"

    @state("auth")
    async def cmd_LISTRIGHTS(self, tag, args):
        if len(args) != 2:
            raise bad("LISTRIGHTS needs a mailbox name and an identifier")
        box = self.mailbox(args[0])
        ident = as_text(args[1], "identifier")
        await self._acl_admin(box)
        await self.send(b"* LISTRIGHTS " + self.rev.mailbox(box.wire) + b" " + astring(ident)
                        + b" " + LISTRIGHTS.encode() + b"\r\n")
        return "Listrights completed"

    @state("auth")
    async def cmd_GETACL(self, tag, args):
        if len(args) != 1:
            raise bad("GETACL needs one mailbox name")
        box = self.mailbox(args[0])
        await self._acl_admin(box)
        entries = await self.blocking(aclfile.read, box.path) or ()
        parts = []
        owner_shown = False
        for e in entries:
            if e.kind == "owner" and box.owner:
                e = replace(e, kind="user", name=box.owner)
            if e.kind == "user" and e.name == box.owner and not e.negative:
                owner_shown = True
            parts.append(astring(e.wire()) + b" " + astring(rightsmod.imap_text(e.rights)))
        if box.kind == access.PERSONAL and not owner_shown:    # the default, as Dovecot shows it
            parts.append(astring(box.owner) + b" " + rightsmod.imap_text(rightsmod.ALL).encode())
        await self.send(b"* ACL " + self.rev.mailbox(box.wire) + b"".join(b" " + p for p in parts) + b"\r\n")
        return "Getacl completed"

    @state("auth")
    async def cmd_SETACL(self, tag, args):
        if len(args) != 3:
            raise bad("SETACL needs a mailbox name, an identifier and rights")
        box = self.mailbox(args[0])
        entry = self._acl_identifier(box, as_text(args[1], "identifier"))
        text = as_text(args[2], "rights")
        mode = {"+": "add", "-": "remove"}.get(text[:1], "replace")
        try:
            letters = rightsmod.parse(text[1:] if mode != "replace" else text)
        except InvalidInput as e:
            raise bad(str(e)) from None
        await self._acl_admin(box)
        await self._acl_change(box, replace(entry, rights=letters), mode)
        return "Setacl complete"

    @state("auth")
    async def cmd_DELETEACL(self, tag, args):
        if len(args) != 2:
            raise bad("DELETEACL needs a mailbox name and an identifier")
        box = self.mailbox(args[0])
        entry = self._acl_identifier(box, as_text(args[1], "identifier"))
        await self._acl_admin(box)
        await self._acl_change(box, entry, "delete")
        return "Deleteacl complete"

    # -- helpers --------------------------------------------------------------------
    def _acl_identifier(self, box, text: str) -> aclfile.Entry:
        """The entry an identifier from the network means. Only existing accounts are
        named (an unknown name could never match and would let junk into the file); the
        owner's own rights are not changed here (they could lock the owner out)."""
        if not text:
            raise bad("Invalid arguments: empty identifier")
        negative = text.startswith("-")
        name = text[1:] if negative else text
        if name in ("anyone", "anonymous", "authenticated"):
            raise bad(f"'{name}' identifier is disallowed (the administrator grants it: mailctl)")
        if name.startswith(("$", "!$")):
            raise bad("Groups are not supported")
        if name.startswith("#"):
            raise bad("Global ACLs can't be modified")
        if name == "owner":
            if box.kind == access.PUBLIC:
                raise no("Public namespaces have no owner")
            raise no("[CANNOT] The owner's own rights are not changed over IMAP")
        account = self.runtime.directory.account(name)
        if account is None:
            raise no(f"No such user: {name[:80]!r}")
        if account.address == box.owner:
            raise no("[CANNOT] The owner's own rights are not changed over IMAP")
        return aclfile.Entry("user", account.address, negative=negative)

    async def _acl_exists(self, box) -> bool:
        try:
            await self.blocking(box.maildir.folder, box.name)
        except NotFound:
            return False
        return True

    async def _acl_admin(self, box) -> None:
        """a on an existing mailbox; one the user cannot see does not exist for them."""
        self.need(box, "a")
        if not await self._acl_exists(box):
            raise no(f"[NONEXISTENT] Mailbox {box.wire!r} does not exist")

    async def _acl_change(self, box, entry, mode: str) -> None:
        def work():
            entries = edit.change(box.path, entry, mode)
            if box.kind != access.PUBLIC:
                edit.note(self.runtime.root, box.owner, box.name, entries)
        await self.blocking(work)

    async def _acl_reply(self, verb: bytes, box, text: str) -> None:
        await self.send(b"* " + verb + b" " + self.rev.mailbox(box.wire) + b" "
                        + (text.encode() if text else b'""') + b"\r\n")
