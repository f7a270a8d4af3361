"""The IMAP commands on mailboxes: SELECT and EXAMINE, CREATE, DELETE, RENAME,
SUBSCRIBE and UNSUBSCRIBE, LIST and LSUB (LIST-EXTENDED, LIST-STATUS: arguments parsed
in listargs.py, the listing made in listing.py), STATUS (with STATUS=SIZE), CREATE's
special uses (CREATE-SPECIAL-USE: maildir/specialuse.py), and QUOTA (RFC 2087: GETQUOTAROOT, GETQUOTA, SETQUOTA) on the account's one
quota root.

CONDSTORE and QRESYNC's additions to SELECT/EXAMINE (HIGHESTMODSEQ, the QRESYNC
parameter) and STATUS (HIGHESTMODSEQ) go here.
"""
from __future__ import annotations

from functools import partial

from .. import folder_cache
from ..acl import rights as rightsmod
from ..errors import AlreadyExists, InvalidInput, NotFound
from ..maildir import check_special_uses
from . import access, acl_list, listargs, listing, rev2
from .commandbase import CommandBase, state
from .errors import bad, mail_error_text, no
from .parser import Atom, ParseError, as_atom, as_text
from . import condstore as condstoremod
from .selected import Selected, flag_list, session_flags

# A LIST answered from the kept listing is matched on the event loop, when this small:
# a trip to a worker thread costs more than matching a few hundred names.
LOOP_LIST_FOLDERS = 500
LOOP_LIST_PATTERN = 256


# The STATUS items we answer (RFC 3501 §6.3.10; SIZE: RFC 8438 STATUS=SIZE, the total of
# the RFC822.SIZEs; DELETED: IMAP4rev2's), each with its key in folder_cache.folder_status()'s
# answer. Which of them a session may ask for is its protocol's (rev2.Revision.status_items).
STATUS_ITEMS = {"MESSAGES": "messages", "RECENT": "recent", "UIDNEXT": "uidnext",
                "UIDVALIDITY": "uidvalidity", "UNSEEN": "unseen", "SIZE": "vsize",
                "HIGHESTMODSEQ": "highestmodseq", "DELETED": "deleted"}


def status_items(tokens, known=rev2.REV1.status_items) -> list[str]:
    """The item names of a STATUS list (of STATUS or of LIST's RETURN (STATUS ...))."""
    if not isinstance(tokens, list) or not tokens:
        raise ParseError("STATUS needs a list of items")
    items = [as_atom(i, "status item").upper() for i in tokens]
    for i in items:
        if i not in known:
            raise ParseError(f"Unknown STATUS item {i[:20]}")
    return items


def create_uses(params) -> list[str]:
    """The special uses of CREATE's parameter list (RFC 4466 create-param, RFC 6154 §3:
    `(USE (\\Archive ...))`); any other parameter is BAD."""
    if not isinstance(params, list) or len(params) != 2 or not isinstance(params[0], Atom) \
            or params[0].upper() != "USE" or not isinstance(params[1], list):
        raise ParseError("CREATE takes only a (USE (attributes)) parameter")
    uses = [as_atom(u, "special-use attribute") for u in params[1]]
    if not uses or any(not u.startswith("\\") for u in uses):
        raise ParseError("USE needs a list of special-use attributes")
    return uses


def _has_children(box: access.Mailbox) -> bool:
    prefix = box.name + "/"
    return any(i.name.startswith(prefix) for i in box.maildir.listing().folders)


class MailboxCommands(CommandBase):
    @state("auth")
    async def cmd_SELECT(self, tag, args, readonly=False):
        if not args:
            raise bad("SELECT needs one mailbox name")
        condstore, qresync = condstoremod.parse_select_params(list(args[1:]), self.enabled)
        closed = self.selected is not None
        self.selected = None
        rev = self.rev
        box = self.mailbox(args[0])
        name = box.wire
        rights = self.need(box, "r")
        verb_readonly = readonly
        readonly = readonly or not (rights & rightsmod.READ_WRITE)
        if condstore:
            self.enabled.add("CONDSTORE")
        condstore = "CONDSTORE" in self.enabled

        def load():  # one trip to the thread pool: under load each trip waits for a CPU
            sel = Selected(access.open_folder(box, self.account.address), readonly)
            sel.access, sel.rights, sel.reports_recent = box, rights, rev.recent
            sel.load()
            resync = []
            if condstore:
                sel.qresync = "QRESYNC" in self.enabled
                sel.start_modseqs()
                if qresync is not None and qresync.uidvalidity == sel.uidvalidity:
                    vanished = condstoremod.vanished_earlier(sel, qresync.modseq, qresync.known)
                    resync = [vanished] if vanished else []
                    resync += condstoremod.changed_lines(sel, qresync.modseq,
                                                         lambda m: flag_list(session_flags(m, sel.is_recent(m))))
            return sel, sel.uidnext(), sel.read_keywords(), resync
        if closed and ("QRESYNC" in self.enabled or rev.closed_always):
            await self.untagged("OK [CLOSED] Previous mailbox closed")
        try:
            sel, uidnext, keywords, resync = await self.blocking(load)
        except NotFound:
            raise no(f"[NONEXISTENT] Mailbox {name!r} does not exist") from None
        await self.send(b"".join(sel.flag_lines(keywords)))
        await self.untagged(f"{len(sel.msgs)} EXISTS")
        if rev.recent:
            await self.untagged(f"{sel.recent_count()} RECENT")
        first_unseen = rev.unseen_code and sel.first_unseen()
        if first_unseen:
            await self.untagged(f"OK [UNSEEN {first_unseen}] First unseen")
        await self.untagged(f"OK [UIDVALIDITY {sel.uidvalidity}] UIDs valid")
        await self.untagged(f"OK [UIDNEXT {uidnext}] Predicted next UID")
        if condstore:
            await self.untagged(f"OK [HIGHESTMODSEQ {sel.highestmodseq}] Highest")
            if resync:
                await self.send(b"".join(resync))
        if rev.select_list:     # RFC 9051 §6.3.2: the name as the server knows it
            await self.send(b'* LIST () "/" ' + rev.mailbox(box.wire) + b"\r\n")
        self.selected = sel
        return f"[{'READ-ONLY' if readonly else 'READ-WRITE'}] {'EXAMINE' if verb_readonly else 'SELECT'} completed"

    @state("auth")
    async def cmd_EXAMINE(self, tag, args):
        return await self.cmd_SELECT(tag, args, readonly=True)

    @state("auth")
    async def cmd_CREATE(self, tag, args):
        if len(args) not in (1, 2):
            raise bad("CREATE needs one mailbox name")
        uses = create_uses(args[1]) if len(args) == 2 else None
        text = as_text(args[0], "mailbox name")
        box = self.mailbox(text.rstrip("/") or text)
        name = box.wire
        if box.name == "INBOX":
            raise no("[ALREADYEXISTS] INBOX always exists")
        if uses:
            try:
                uses = check_special_uses(uses)
            except InvalidInput as e:
                raise no(f"[USEATTR] {e}") from None
        parent = self._parent_for_new(box)
        try:
            await self.blocking(acl_list.create_folder, self.runtime.root, box, parent, uses)
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
        except InvalidInput as e:   # INBOX, or one with children (RFC 9051 §6.3.5's code)
            if self.rev.haschildren_code and await self.blocking(_has_children, box):
                raise no(f"[HASCHILDREN] {mail_error_text(e)}") from None
            raise
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
            prefix = new_box.wire[:len(new_box.wire) - len(new_box.name)]
            moved = access.Mailbox(prefix + renamed, new_box.maildir, renamed, new_box.kind, new_box.owner)
            # opened as before: a shared folder keeps showing this user's own \Seen
            sel.renamed(await self.blocking(access.open_folder, moved, self.account.address))
            if sel.access is not None:
                sel.access = moved
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
        if lsub:
            if len(args) != 2:
                raise bad("LSUB needs a reference and a mailbox pattern")
            ref, patterns = as_text(args[0], "reference"), [as_text(args[1], "mailbox pattern")]
            options = listing.Options(lsub=True)
        else:
            ref, patterns, options = listargs.parse_list(args, partial(status_items, known=self.rev.status_items))
            options.extended = options.extended or self.rev.list_extended
        options.utf8 = self.rev.utf8_names
        if patterns == [""]:
            if verb == "LIST":
                await self.untagged('LIST (\\Noselect) "/" ""')
            return f"{verb} completed"
        # RFC 5258 §3: in a list of patterns an empty one matches nothing
        matchers = [listing.Pattern(ref + p) for p in patterns if p]
        if any(acl_list.may_match(ref + p) for p in patterns if p) and \
                not (lsub or options.subscribed_only or options.special_use_only):
            await self.send(await self.blocking(acl_list.others, self.runtime, self.account, self.maildir,
                                                verb, matchers, options.utf8))
        if options.status_items is not None:
            await self.send(await self.blocking_with_updates(self._list_with_status, matchers, options))
            return f"{verb} completed"
        # An unchanged tree: its kept listing (two lstat() calls), no trip to a worker thread.
        kept = self.maildir.cached_listing()
        size = sum(len(ref + p) for p in patterns)
        if kept is not None and len(kept.folders) <= LOOP_LIST_FOLDERS and size <= LOOP_LIST_PATTERN:
            await self.send(listing.listing(verb, matchers, kept.folders, kept.subscribed, options))
            return f"{verb} completed"

        def work():  # folders, subscriptions and matching: off the event loop
            tree = kept or self.maildir.listing()
            return listing.listing(verb, matchers, tree.folders, tree.subscribed, options)
        await self.send(await self.blocking_with_updates(work))
        return f"{verb} completed"

    def _list_with_status(self, matchers, options) -> bytes:
        """LIST-STATUS (RFC 5819): each selectable mailbox's LIST line followed by its
        STATUS line, in one trip to a worker thread. A folder deleted meanwhile by
        another session keeps its LIST line and gets no STATUS."""
        tree = self.maildir.cached_listing() or self.maildir.listing()
        out = []
        for entry in listing.entries(matchers, tree.folders, tree.subscribed, options):
            out.append(listing.render("LIST", [entry], options.utf8))
            if not entry.selectable:
                continue
            try:
                st = folder_cache.cached_status(self.maildir, entry.name) or \
                    folder_cache.folder_status(self.maildir, entry.name)
            except NotFound:
                continue
            out.append(self._status_reply(access.personal(self.account, self.maildir, entry.name), st,
                                          options.status_items))
        return b"".join(out)

    def _status_reply(self, box: access.Mailbox, st: dict, items: list[str]) -> bytes:
        sel = self.selected
        if sel is not None and box.holds(sel.folder):
            st = dict(st, recent=sel.recent_count())
        out = " ".join(f"{i} {st[STATUS_ITEMS[i]]}" for i in items)
        return b"* STATUS " + self.rev.mailbox(box.wire) + f" ({out})\r\n".encode()

    @state("auth")
    async def cmd_LSUB(self, tag, args):
        return await self.cmd_LIST(tag, args, lsub=True)

    @state("auth")
    async def cmd_STATUS(self, tag, args):
        if len(args) != 2 or not isinstance(args[1], list):
            raise bad("STATUS needs a mailbox name and a list of items")
        box = self.mailbox(args[0])
        name = box.name
        items = status_items(args[1], self.rev.status_items)
        # An unchanged folder: its kept answer (three lstat() calls), no trip to a thread.
        self.need(box, "r")
        st = folder_cache.cached_status(box.maildir, name) if box.kind == access.PERSONAL else None
        if st is None and box.kind != access.PERSONAL:    # UNSEEN by the user's own \Seen
            try:
                st = await self.blocking_with_updates(lambda: access.open_folder(box, self.account.address).status())
            except NotFound:
                raise no(f"[NONEXISTENT] Mailbox {box.wire!r} does not exist") from None
        if st is None:
            try:
                st = await self.blocking_with_updates(folder_cache.folder_status, box.maildir, name)
            except NotFound:
                raise no(f"[NONEXISTENT] Mailbox {box.wire!r} does not exist") from None
        if "HIGHESTMODSEQ" in items:     # a CONDSTORE enabling command (RFC 7162 §3.1)
            await condstoremod.enable(self)
            st = dict(st, highestmodseq=await self.blocking(lambda: box.maildir.folder(name).highest_modseq()))
        await self.send(self._status_reply(box, st, items))
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
            await self.send(b"* QUOTAROOT " + self.rev.mailbox(box.wire) + b"\r\n")
            return "GETQUOTAROOT completed"
        name = box.name
        await self.open_folder(name)
        await self.send(b"* QUOTAROOT " + self.rev.mailbox(name) + b' ""\r\n')
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
