"""A deadline for the task serving one connection: the idle limit while it reads a
request, the command time limit while it answers one.

`asyncio.timeout` makes and cancels a timer for every `async with`; at one read and one
command per request that was a tenth of a small command's server time. A Watchdog keeps
one timer per connection: moving the deadline later is an assignment, and the timer, when
it comes due early, sets itself again at the deadline now in force. When a deadline
passes, the task is cancelled as asyncio.timeout would do it, and `expired()` tells that
cancellation apart from any other.
"""
from __future__ import annotations

import asyncio


class Watchdog:
    __slots__ = ("_loop", "_task", "_deadline", "_timer", "_fired", "_cancelling")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._deadline: float | None = None     # loop.time() at which the task is cancelled
        self._timer: asyncio.TimerHandle | None = None
        self._fired = False
        self._cancelling = 0

    def watch(self, seconds: float | None) -> None:
        """Cancel the task unless stop() or watch() comes within `seconds` (None: no limit)."""
        if seconds is None:
            self._deadline = None
            return
        deadline = self._deadline = self._loop.time() + seconds
        timer = self._timer
        if timer is None or timer.when() > deadline:    # a later timer would come too late
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._due)

    def stop(self) -> None:
        self._deadline = None
        if self._fired:         # the watched code swallowed the cancellation: take it back
            self._fired = False
            self._task.uncancel()

    def expired(self) -> bool:
        """Asked in an `except CancelledError`: True when the deadline cancelled the task
        (that cancellation is then taken back); False for any other, to be re-raised."""
        if not self._fired:
            return False
        self._fired = False
        return self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:            # nothing watched now: the next watch() sets a timer
            return
        if deadline > self._loop.time():    # moved later since this timer was set
            self._timer = self._loop.call_at(deadline, self._due)
            return
        self._deadline = None
        self._fired = True
        self._cancelling = self._task.cancelling()
        self._task.cancel()
