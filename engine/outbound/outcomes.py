"""Writing the outcome of a delivery attempt on a disk that may be full or read-only.

An outcome the disk cannot take (ENOSPC, EDQUOT, EROFS) is kept in memory and written at
a later pass. Its item stays claimed in active/ meanwhile, so no runner tries it again:
the recipients it already sent to are not sent to twice, and nothing is lost. The trouble
is logged once, not at every pass, until the disk takes a write again.
"""
from __future__ import annotations

from ..storage_errors import is_storage_fault
from ..queue import Envelope, Queue


class Outcomes:
    def __init__(self, queue: Queue, blocking, log):
        self.queue = queue
        self.blocking = blocking          # runs a function in the disk thread pool
        self.log = log
        self.unsaved: dict[str, Envelope] = {}
        self.warned = False

    def trouble(self, qid: str, e: OSError) -> None:
        if not self.warned:
            self.log.warning("queue %s: %s: the disk takes no writes; queued mail waits and is retried "
                             "when there is room", qid, e.strerror)
        self.warned = True

    async def finish(self, env: Envelope) -> None:
        """queue.finish(env), or keep env for a later pass when the disk cannot take it."""
        try:
            await self.blocking(self.queue.finish, env, "deferred")
        except OSError as e:
            if not is_storage_fault(e):
                raise
            self.unsaved[env.id] = env
            self.trouble(env.id, e)
            return
        self.unsaved.pop(env.id, None)
        self.warned = False

    async def save_pending(self) -> None:
        for env in list(self.unsaved.values()):
            await self.finish(env)
            if env.id in self.unsaved:
                return                # still no room: the others wait for the next pass
