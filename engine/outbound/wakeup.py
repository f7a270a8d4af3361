"""Waking the queue runner when something was queued.

Inside a process, the pickup worker wakes the runners at once (wake_local); from outside,
`mailctl send`, sendmail(1) and `mailctl queue` send 'queue-changed' to the running server
(notify_server), whose serving process with the workers answers with queue_changed. The
service registers that handler where it starts its workers; importing this module
registers nothing. It imports no part of the runner, so whoever queues mail can wake it
without an import circle.
"""
from __future__ import annotations

import asyncio
import contextlib

from .. import control
from ..errors import MailError

_events: set[asyncio.Event] = set()      # one per runner serving in this process


@contextlib.contextmanager
def subscription():
    """An event set whenever the queue changes, for as long as the block runs."""
    event = asyncio.Event()
    _events.add(event)
    try:
        yield event
    finally:
        _events.discard(event)


def wake_local() -> None:
    """Wake the runners of this process (the pickup worker queued something)."""
    for event in list(_events):
        event.set()


async def queue_changed(runtime, **args) -> dict:
    """The control socket's 'queue-changed' in the process whose runners deliver."""
    wake_local()
    return {"ok": True}


def notify_server(root) -> bool:
    """Tell a running server the queue changed (False when none runs)."""
    try:
        control.request(root, "queue-changed", timeout=2.0)
        return True
    except (MailError, OSError):
        return False
