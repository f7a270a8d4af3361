"""The IMAP commands that touch no mailbox and no message: CAPABILITY, NOOP, CHECK,
LOGOUT, ID, ENABLE, NAMESPACE, IDLE. (LOGIN, AUTHENTICATE and STARTTLS change the
connection itself and live in session.py.)

ENABLE is where an extension a client switches on for the session (CONDSTORE, QRESYNC,
IMAP4rev2) is recorded; its capability goes in session.BASE_CAPS.
"""
from __future__ import annotations

import asyncio

from . import condstore, rev2
from .commandbase import CommandBase, state
from .errors import bad
from .parser import as_atom

IDLE_POLL_S = 1.0
# what ENABLE switches on, by its name in upper case; others are ignored (RFC 5161)
ENABLABLE = {n.upper(): n for n in ("CONDSTORE", "QRESYNC", rev2.CAPABILITY)}


class GeneralCommands(CommandBase):
    @state("any")
    async def cmd_CAPABILITY(self, tag, args):
        await self.untagged("CAPABILITY " + " ".join(self.capabilities()))
        return "Capability completed"

    @state("any")
    async def cmd_NOOP(self, tag, args):
        await self.announce_changes()
        return "NOOP completed"

    @state("any")
    async def cmd_LOGOUT(self, tag, args):
        await self.send(b"* BYE Logging out\r\n")
        await self.send(f"{tag} OK Logout completed\r\n".encode())
        self.closing = True
        return None

    @state("any")
    async def cmd_ID(self, tag, args):
        await self.untagged('ID ("name" "mailctl" "vendor" "mailctl")')
        return "ID completed"

    @state("auth")
    async def cmd_ENABLE(self, tag, args):
        if not args:
            raise bad("ENABLE needs at least one capability name")
        newly = []
        for token in args:
            name = ENABLABLE.get(as_atom(token, "capability name").upper())
            if name is not None and name not in self.enabled and name not in newly:
                newly.append(name)
        self.enabled.update(newly)
        if "CONDSTORE" in newly or "QRESYNC" in newly:
            await condstore.enable(self)     # QRESYNC implies CONDSTORE (RFC 7162 §3.2.3)
        if rev2.CAPABILITY in newly:
            await rev2.enable(self)
        await self.untagged("ENABLED" + "".join(" " + n for n in newly))
        return "ENABLE completed"

    @state("auth")
    async def cmd_NAMESPACE(self, tag, args):
        # personal, other users' (shared with us), the domain's public folders (imap/access.py)
        await self.untagged('NAMESPACE (("" "/")) (("Shared/" "/")) (("Public/" "/"))')
        return "NAMESPACE completed"

    @state("auth")
    async def cmd_IDLE(self, tag, args):
        await self.send(b"+ idling\r\n")
        deadline = asyncio.get_running_loop().time() + self.runtime.settings.mailbox.idle_timeout_s
        # readline(): a line over the limit is read to its end and answered BAD, as outside IDLE
        reader_task = asyncio.ensure_future(self.readline())
        try:
            while True:
                await self.announce_changes()
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    await self.send(b"* BYE Autologout; idle for too long\r\n")
                    self.closing = True
                    return None
                done, _ = await asyncio.wait({reader_task}, timeout=min(IDLE_POLL_S, left))
                if self.runtime.stopping.is_set():
                    await self.send(b"* BYE Server shutting down\r\n")
                    self.closing = True
                    return None
                if done:
                    break
        finally:
            if not reader_task.done():
                reader_task.cancel()
        try:
            line = reader_task.result()
        except ConnectionError:
            line = None
        if line is None:
            self.closing = True
            return None
        if line.strip().upper() != b"DONE":
            raise bad("Expected DONE to end IDLE")
        return "IDLE terminated"

    @state("selected")
    async def cmd_CHECK(self, tag, args):
        await self.announce_changes()
        return "CHECK completed"
