"""How an IMAP command fails: a CommandError carries the tagged reply's status (NO or
BAD) and text. In a module of its own so the session and the command families both
raise and catch it without importing each other. Also the NO texts for the store's
expected errors (MailError): Dovecot's where it has one, and never a path."""
from __future__ import annotations

from ..errors import LockTimeout, MailError, QuotaExceeded, client_text

# Dovecot's text for a failure whose detail is only in the server's log (MAIL_ERRSTR_CRITICAL_MSG).
SERVER_BUG = "[SERVERBUG] Internal error occurred. Refer to server log for more information."


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


def mail_error_text(e: MailError) -> str:
    """The text after NO for an expected error; SERVER_BUG when all it could say names a
    file of the server (the caller logs str(e) then)."""
    if isinstance(e, QuotaExceeded):
        return "[OVERQUOTA] " + client_text(e, QuotaExceeded.public)
    if isinstance(e, LockTimeout):
        return "[INUSE] " + client_text(e, LockTimeout.public)
    return client_text(e, SERVER_BUG)
