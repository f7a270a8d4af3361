"""What the Sieve duplicate test (RFC 7352) remembers: for one mailbox, the unique ids
(a Message-ID, another header's value, or :uniqueid) of messages it saw, per :handle, each
for its period.

    state/duplicates/<sha256 of "mailbox NUL handle NUL id">     its mtime: when the period ends

The test claims an id when it looks (engine/expiring.py: one step under one lock): of two
copies of one message delivered at once by two serving processes exactly one is "new".
RFC 7352 records an id when the script completes; claiming at the test differs only when
the script then fails, and the message goes to INBOX then anyway.
"""
from __future__ import annotations

from ..expiring import seen_or_mark

DIRNAME = "duplicates"
DEFAULT_SECONDS = 7 * 86400          # Pigeonhole's sieve_duplicate_max_period; its default period is longer
MAX_SECONDS = 7 * 86400


class DuplicateStore:
    def __init__(self, root, mailbox: str):
        self.root, self.mailbox = root, mailbox.lower()

    def seen(self, handle: str, unique: str, seconds: int | None, last: bool, now: float | None = None) -> bool:
        """Was unique seen within its period? Either way it is remembered from now on (with
        :last, a sighting also starts its period again)."""
        period = min(MAX_SECONDS, DEFAULT_SECONDS if seconds is None else max(0, seconds))
        return seen_or_mark(self.root, DIRNAME, (self.mailbox, handle, unique), period, refresh=last, now=now)
