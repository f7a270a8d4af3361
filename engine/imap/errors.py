"""How an IMAP command fails: a CommandError carries the tagged reply's status (NO or
BAD) and text. In a module of its own so the session and the command families both
raise and catch it without importing each other."""
from __future__ import annotations


class CommandError(Exception):
    """A command fails with `status` (NO or BAD) and a reason."""

    def __init__(self, status: str, text: str):
        super().__init__(text)
        self.status = status
        self.text = text


def no(text: str) -> CommandError:
    return CommandError("NO", text)


def bad(text: str) -> CommandError:
    return CommandError("BAD", text)
