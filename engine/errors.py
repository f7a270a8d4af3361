"""Errors a user can fix. Each carries one line: what failed, on what, and what to do."""


class MailError(Exception):
    """Base of expected errors; the CLI prints str(error) on one line and exits 1."""


class NotFound(MailError):
    pass


class AlreadyExists(MailError):
    pass


class InvalidInput(MailError):
    pass


class ConfigError(MailError):
    """A configuration file is invalid. `problems` holds 'file:line: key: message' lines."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


class QuotaExceeded(MailError):
    pass


class LockTimeout(MailError):
    pass
