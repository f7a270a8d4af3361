"""The IMAP commands on mailboxes: SELECT and EXAMINE, CREATE, DELETE, RENAME,
SUBSCRIBE and UNSUBSCRIBE, LIST and LSUB (with the LIST-EXTENDED forms clients send),
STATUS, and QUOTA (RFC 2087: GETQUOTAROOT, GETQUOTA, SETQUOTA) on the account's one
quota root.

CONDSTORE and QRESYNC's additions to SELECT/EXAMINE (HIGHESTMODSEQ, the QRESYNC
parameter) and STATUS (HIGHESTMODSEQ) go here.
"""
from __future__ import annotations

from .. import folder_cache
from .. import mutf7
from ..errors import AlreadyExists, NotFound
from ..acl import rights as rightsmod
from . import access, acl_list, listing
from .commandbase import CommandBase, state
from .errors import bad, no
from .parser import Atom, as_atom, as_text
from .response import astring
from .selected import Selected

# A LIST answered from the kept listing is matched on the event loop, when this small:
# a trip to a worker thread costs more than matching a few hundred names.
LOOP_LIST_FOLDERS = 500
LOOP_LIST_PATTERN = 256


class MailboxCommands(CommandBase):
    @state("auth")
    async def cmd_SELECT(self, tag, args, readonly=False):
        if len(args) != 1:
            raise bad("SELECT needs one mailbox name")
        self.selected = None
        box = self.mailbox(args[0])
        name = box.wire
        rights = self.need(box, "r")
        verb_readonly = readonly
        readonly = readonly or not (rights & rightsmod.READ_WRITE)

        def load():  # one trip to the thread pool: under load each trip waits for a CPU
            sel = Selected(box.maildir.folder(box.name), readonly)
            sel.access, sel.rights = box, rights
            sel.load()
            return sel, sel.uidnext(), sel.read_keywords()
        try:
            sel, uidnext, keywords = await self.blocking(load)
        except NotFound:
            raise no(f"[NONEXISTENT] Mailbox {name!r} does not exist") from None
        await self.send(b"".join(sel.flag_lines(keywords)))
        await self.untagged(f"{len(sel.msgs)} EXISTS")
        await self.untagged(f"{sel.recent_count()} RECENT")
        first_unseen = sel.first_unseen()
        if first_unseen:
            await self.untagged(f"OK [UNSEEN {first_unseen}] First unseen")
        await self.untagged(f"OK [UIDVALIDITY {sel.uidvalidity}] UIDs valid")
        await self.untagged(f"OK [UIDNEXT {uidnext}] Predicted next UID")
        self.selected = sel
        return f"[{'READ-ONLY' if readonly else 'READ-WRITE'}] {'EXAMINE' if verb_readonly else 'SELECT'} completed"

    @state("auth")
    async def cmd_EXAMINE(self, tag, args):
        return await self.cmd_SELECT(tag, args, readonly=True)

    @state("auth")
    async def cmd_CREATE(self, tag, args):
        if len(args) != 1:
            raise bad("CREATE needs one mailbox name")
        text = as_text(args[0], "mailbox name")
        box = self.mailbox(text.rstrip("/") or text)
        name = box.wire
        if box.name == "INBOX":
            raise no("[ALREADYEXISTS] INBOX always exists")
        parent = self._parent_for_new(box)
        try:
            await self.blocking(acl_list.create_folder, self.runtime.root, box, parent)
        except AlreadyExists:
            raise no(f"[ALREADYEXISTS] Mailbox {name!r} already exists") from None
        return "CREATE completed"

    @state("auth")
    async def cmd_DELETE(self, tag, args):
        if len(args) != 1:
            raise bad("DELETE needs one mailbox name")
        box = self.mailbox(args[0])
        name = box.wire
        self.need(box, "x")
        if self.selected is not None and box.holds(self.selected.folder):
            self.selected = None
        try:
            await self.blocking(box.maildir.delete_folder, box.name)
        except NotFound:
            raise no(f"[NONEXISTENT] Mailbox {name!r} does not exist") from None
        return "DELETE completed"

    @state("auth")
    async def cmd_RENAME(self, tag, args):
        if len(args) != 2:
            raise bad("RENAME needs two mailbox names")
        old_box, new_box = self.mailbox(args[0]), self.mailbox(args[1])
        old, new = old_box.wire, new_box.wire
        if old_box.maildir.path != new_box.maildir.path:
            raise no("[CANNOT] A mailbox cannot be moved to another owner or namespace")
        self.need(old_box, "x")
        self._parent_for_new(new_box)
        try:
            await self.blocking(old_box.maildir.rename_folder, old_box.name, new_box.name)
        except NotFound:
            raise no(f"[NONEXISTENT] Mailbox {old!r} does not exist") from None
        except AlreadyExists:
            raise no(f"[ALREADYEXISTS] Mailbox {new!r} already exists") from None
        sel = self.selected
        # The selected mailbox (or a parent) renamed: it stays selected under its new
        # name, UIDVALIDITY and UIDs unchanged (RFC 3501 6.3.5 keeps its messages whole).
        # Renaming INBOX moves its messages instead, seen here as expunges.
        old, new = old_box.name, new_box.name
        if sel is not None and old != "INBOX" and sel.folder.maildir.path == old_box.maildir.path \
                and (sel.folder.name + "/").startswith(old + "/"):
            renamed = new + sel.folder.name[len(old):]
            sel.renamed(await self.blocking(new_box.maildir.folder, renamed))
            if sel.access is not None:
                prefix = new_box.wire[:len(new_box.wire) - len(new_box.name)]
                sel.access = access.Mailbox(prefix + renamed, new_box.maildir, renamed, new_box.kind, new_box.owner)
        return "RENAME completed"

    def _parent_for_new(self, box):
        """The parent a new (created or renamed) mailbox gets its rights from, after
        checking k on it; outside the user's own folders only below an existing one."""
        parent_name = box.name.rpartition("/")[0]
        if not parent_name:
            if box.kind != access.PERSONAL:
                raise no(f"{access.NO_PERMISSION} (new mailboxes go below an existing one here)")
            return None
        parent = access.Mailbox(box.wire[:len(box.wire) - len(box.name)] + parent_name, box.maildir,
                                parent_name, box.kind, box.owner)
        self.need(parent, "k")
        return parent

    @state("auth")
    async def cmd_SUBSCRIBE(self, tag, args):
        if len(args) != 1:
            raise bad("SUBSCRIBE needs one mailbox name")
        await self.blocking(self.maildir.subscribe, self._personal_name(args[0]))
        return "SUBSCRIBE completed"

    def _personal_name(self, token) -> str:
        box = self.mailbox(token)
        if box.kind != access.PERSONAL:
            raise no("[CANNOT] Subscriptions are kept for your own folders only (LIST shows shared ones)")
        return box.name

    @state("auth")
    async def cmd_UNSUBSCRIBE(self, tag, args):
        if len(args) != 1:
            raise bad("UNSUBSCRIBE needs one mailbox name")
        await self.blocking(self.maildir.unsubscribe, self._personal_name(args[0]))
        return "UNSUBSCRIBE completed"

    @state("auth")
    async def cmd_LIST(self, tag, args, lsub=False):
        verb = "LSUB" if lsub else "LIST"
        args = list(args)
        options = listing.Options(lsub=lsub)
        if not lsub:
            # LIST-EXTENDED forms (RFC 5258/6154) that clients send: selection options
            # first, RETURN options last. Children and special-use attributes are always
            # given; \Subscribed only when asked for.
            selection = args.pop(0) if args and isinstance(args[0], list) else []
            returns = []
            if len(args) == 4 and isinstance(args[2], Atom) and args[2].upper() == "RETURN":
                returns = args[3] if isinstance(args[3], list) else [args[3]]
                args = args[:2]
            chosen = {o.upper() for o in selection if isinstance(o, Atom)}
            options.subscribed_only = "SUBSCRIBED" in chosen
            options.special_use_only = "SPECIAL-USE" in chosen
            options.return_subscribed = any(isinstance(o, Atom) and o.upper() == "SUBSCRIBED" for o in returns)
        if len(args) != 2:
            raise bad(f"{verb} needs a reference and a mailbox pattern")
        ref = as_text(args[0], "reference")
        pattern = as_text(args[1], "mailbox pattern")
        if not pattern:
            if verb == "LIST":
                await self.untagged('LIST (\\Noselect) "/" ""')
            return f"{verb} completed"
        matcher = listing.Pattern(ref + pattern)
        if acl_list.may_match(ref + pattern) and not (lsub or options.subscribed_only or options.special_use_only):
            await self.send(await self.blocking(acl_list.others, self.runtime, self.account, self.maildir,
                                                verb, matcher))
        # An unchanged tree: its kept listing (two lstat() calls), no trip to a worker thread.
        kept = self.maildir.cached_listing()
        if kept is not None and len(kept.folders) <= LOOP_LIST_FOLDERS and len(ref + pattern) <= LOOP_LIST_PATTERN:
            await self.send(listing.listing(verb, matcher, kept.folders, kept.subscribed, options))
            return f"{verb} completed"

        def work():  # folders, subscriptions and matching: off the event loop
            tree = kept or self.maildir.listing()
            return listing.listing(verb, matcher, tree.folders, tree.subscribed, options)
        await self.send(await self.blocking_with_updates(work))
        return f"{verb} completed"

    @state("auth")
    async def cmd_LSUB(self, tag, args):
        return await self.cmd_LIST(tag, args, lsub=True)

    @state("auth")
    async def cmd_STATUS(self, tag, args):
        if len(args) != 2 or not isinstance(args[1], list):
            raise bad("STATUS needs a mailbox name and a list of items")
        box = self.mailbox(args[0])
        name = box.name
        items = [as_atom(i, "status item").upper() for i in args[1]]
        allowed = {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE"}
        for i in items:
            if i not in allowed:
                raise bad(f"Unknown STATUS item {i[:20]}")
        # An unchanged folder: its kept answer (three lstat() calls), no trip to a thread.
        self.need(box, "r")
        st = folder_cache.cached_status(box.maildir, name)
        if st is None:
            try:
                st = await self.blocking_with_updates(folder_cache.folder_status, box.maildir, name)
            except NotFound:
                raise no(f"[NONEXISTENT] Mailbox {box.wire!r} does not exist") from None
        if self.selected is not None and box.holds(self.selected.folder):
            st["recent"] = self.selected.recent_count()
        out = " ".join(f"{i} {st[i.lower()]}" for i in items)
        await self.send(b"* STATUS " + astring(mutf7.encode(box.wire)) + f" ({out})\r\n".encode())
        return "STATUS completed"

    async def _quota(self):
        used, _ = await self.blocking(self.maildir.quota_usage)
        limit = self.account.quota_mb * 1024 * 1024 if self.account.quota_mb else \
            await self.blocking(self.maildir.quota_limit)
        return used, limit

    async def _send_quota(self):
        used, limit = await self._quota()
        if limit:
            await self.untagged(f'QUOTA "" (STORAGE {used // 1024} {limit // 1024})')
        else:
            await self.untagged('QUOTA "" ()')

    @state("auth")
    async def cmd_GETQUOTAROOT(self, tag, args):
        if len(args) != 1:
            raise bad("GETQUOTAROOT needs a mailbox name")
        box = self.mailbox(args[0])
        if box.kind != access.PERSONAL:      # the owner's quota is not this user's to see
            self.need(box, "r")
            await self.send(b"* QUOTAROOT " + astring(mutf7.encode(box.wire)) + b"\r\n")
            return "GETQUOTAROOT completed"
        name = box.name
        await self.open_folder(name)
        await self.send(b"* QUOTAROOT " + astring(mutf7.encode(name)) + b' ""\r\n')
        await self._send_quota()
        return "GETQUOTAROOT completed"

    @state("auth")
    async def cmd_GETQUOTA(self, tag, args):
        if len(args) != 1:
            raise bad("GETQUOTA needs a quota root")
        if as_text(args[0], "quota root") != "":
            raise no("[NONEXISTENT] No such quota root (the only one is \"\")")
        await self._send_quota()
        return "GETQUOTA completed"

    @state("auth")
    async def cmd_SETQUOTA(self, tag, args):
        raise no("[NOPERM] Quotas are set by the administrator (mailctl account)")
