"""Errors a user can fix. Each carries one line: what failed, on what, and what to do.

That line is for the administrator (the CLI, the log) and may name a file. A network
client is told `client_text(error, fallback)` instead: the error's `public` text, else
its line when that names no file, else the fallback. No protocol reply shows a path.
"""
from __future__ import annotations

import re


class MailError(Exception):
    """Base of expected errors; the CLI prints str(error) on one line and exits 1.
    `public`: what a network client may be shown (None: the line itself, if it names no file)."""

    public: str | None = None

    def __init__(self, *args, public: str | None = None):
        super().__init__(*args)
        if public is not None:
            self.public = public


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
    public = "Quota exceeded (mailbox for user is full)"      # Dovecot's quota_exceeded_message


class LockTimeout(MailError):
    public = "Timeout while waiting for lock"                 # Dovecot's MAIL_ERRSTR_LOCK_TIMEOUT


# A path as our messages write one (unquoted: "{path}: ..."): "/" at the start of a word,
# then a name; or a place of the mail root ("mail/example.com/alice", "mailctl.toml").
# A name the client gave is quoted ({name!r}) or a folder such as "a/b": not a path.
_PATH = re.compile(r"(?:^|(?<=[\s(\[<=:,]))/[^\s/'\"]"
                   r"|(?:^|(?<=[\s(\[<=:,]))(?:mail|domains|queue|pickup|tls|dkim|state|removed|log|run)/"
                   r"|(?:^|(?<=[\s(\[<=:,]))mailctl\.toml")


def names_a_file(text: str) -> bool:
    """Whether text holds something that looks like a file-system path."""
    return _PATH.search(text) is not None


def client_text(e: BaseException, fallback: str) -> str:
    """What a network client is told of e: its public text, else its message when that
    names no file, else fallback (the caller logs str(e) then). Never a path."""
    public = getattr(e, "public", None)
    if public:
        return public
    text = str(e)
    return fallback if not text or names_a_file(text) else text
