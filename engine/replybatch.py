"""Replies batched into one write: replies to pipelined SMTP commands, an IMAP FETCH and
its tagged OK are held back and go out with the next write. On loopback a send() costs
as much as the rest of a small command, so replies that go together are written together."""
from __future__ import annotations


def drain_held(held: list[bytes], data: bytes) -> bytes:
    """The held replies, in order, then data, as one bytes; held is emptied."""
    if not held:
        return data
    data = b"".join(held) + data
    held.clear()
    return data
