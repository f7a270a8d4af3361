"""`mailctl autoreply`: an account's out-of-office reply, written as a Sieve vacation action
in a generated section of its active script (engine/sieve/generated.py), so Dovecot's
Pigeonhole on the same root answers alike. Sending follows RFC 3834 and RFC 5230
(engine/accept/autoreply.py): once per sender per period, never to lists or automatic mail.

The settings are kept in the section itself, as one JSON comment line, so `show` reads
back exactly what `set` wrote and the script stays the one truth:

    # mailctl-autoreply {"subject": "Re: %SUBJECT%", "days": 7, "from": "", "until": "", ...}
    if header :matches "subject" "*" { set "mailctl_subject" "${1}"; }
    if allof (currentdate :value "ge" "date" "2026-12-20", currentdate :value "le" "date" "2027-01-04") {
      vacation :days 7 :subject "Re: ${mailctl_subject}" "I am away ...";
    }

%SUBJECT% in the subject is the original subject; %NAME% and %ADDRESS% the account's name
and address. A body without an HTML part is plain text; with one, a multipart/alternative
reply (:mime).
"""
from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from dataclasses import asdict, dataclass

from ..errors import InvalidInput
from .generated import quote, read_section, write_section

SECTION = "autoreply"
DEFAULT_SUBJECT = "Re: %SUBJECT%"
DEFAULT_BODY = "Hello,\n\nI am away and will read your message when I am back.\n\n%NAME%\n"
_SETTINGS = "# mailctl-autoreply "
MAX_TEXT = 64 * 1024


@dataclass
class Autoreply:
    subject: str = DEFAULT_SUBJECT
    body: str = DEFAULT_BODY
    html: str = ""
    start: str = ""          # YYYY-MM-DD: the first day it answers ('' = from now)
    until: str = ""          # YYYY-MM-DD: the last day it answers ('' = until turned off)
    days: int = 7            # one reply per sender per this many days


def _date(text: str, what: str) -> str:
    if not text:
        return ""
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise InvalidInput(f"{what}: {text!r} is not a date like 2026-12-24") from None


def check(reply: Autoreply) -> Autoreply:
    reply.start, reply.until = _date(reply.start, "--from"), _date(reply.until, "--until")
    if reply.start and reply.until and reply.until < reply.start:
        raise InvalidInput("--until is before --from")
    if not 1 <= reply.days <= 365:
        raise InvalidInput("--days must be from 1 to 365")
    if not reply.subject.strip() or "\n" in reply.subject or "\r" in reply.subject:
        raise InvalidInput("the subject must be one line of text")
    for text in (reply.body, reply.html):
        if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT or "\0" in text:
            raise InvalidInput(f"the body must be text of at most {MAX_TEXT // 1024} KiB")
    return reply


def _macros(text: str, name: str, address: str) -> str:
    text = text.replace("${", "${mailctl_dollar}{")          # a literal ${ is not a variable
    return text.replace("%NAME%", name or address).replace("%ADDRESS%", address)


def _mime(body: str, html: str) -> str:
    boundary = "mailctl-autoreply-alternative"
    return (f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n--{boundary}\n'
            f"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{body}\n--{boundary}\n"
            f"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{html}\n--{boundary}--\n")


def section(reply: Autoreply, name: str, address: str) -> tuple[list[str], list[str]]:
    """(requires, body lines) of the vacation section."""
    requires = ["vacation", "variables"] + (["date", "relational"] if reply.start or reply.until else [])
    subject = _macros(reply.subject, name, address).replace("%SUBJECT%", "${mailctl_subject}")
    text = _macros(reply.body, name, address)
    mime = bool(reply.html)
    reason = _mime(text, _macros(reply.html, name, address)) if mime else text
    # its own handle: the subject changes with every message (%SUBJECT%), and a handle made
    # from it would answer a sender again for each new subject; a new `set` answers anew
    handle = "mailctl-autoreply-" + hashlib.sha256(json.dumps(asdict(reply)).encode()).hexdigest()[:16]
    action = (f"vacation :days {reply.days} :subject {quote(subject)} :handle {quote(handle)}"
              f"{' :mime' if mime else ''} {quote(reason)};")
    when = [f'currentdate :value "ge" "date" {quote(reply.start)}'] if reply.start else []
    when += [f'currentdate :value "le" "date" {quote(reply.until)}'] if reply.until else []
    lines = [_SETTINGS + json.dumps(asdict(reply), ensure_ascii=True), 'set "mailctl_dollar" "$";',
             'set "mailctl_subject" "";', 'if header :matches "subject" "*" { set "mailctl_subject" "${1}"; }']
    if when:
        lines += [f"if allof ({', '.join(when)}) {{", f"  {action}", "}"]
    else:
        lines.append(action)
    return requires, lines


TEMPLATE = ("templates", "autoreply.txt")      # under the root: the text of an autoreply set without one


def write_template(root) -> None:
    """A new root's autoreply template (the administrator edits it for everyone)."""
    from ..root import atomic_write
    path = Path(root.path).joinpath(*TEMPLATE)
    path.parent.mkdir(mode=0o755, exist_ok=True)
    if not path.exists():
        atomic_write(path, DEFAULT_BODY.encode("utf-8"), mode=0o644)


def template(root_path) -> str:
    """The root's autoreply template, else the built-in text."""
    from .. import nofollow
    try:
        text = nofollow.read_text(Path(root_path).joinpath(*TEMPLATE), quiet=True)
    except (OSError, UnicodeDecodeError):
        return DEFAULT_BODY
    return text[:MAX_TEXT] if text.strip() else DEFAULT_BODY


def set_reply(home, reply: Autoreply, name: str, address: str) -> str:
    """Write (or replace) the account's autoreply; the script's name is returned."""
    requires, body = section(check(reply), name, address)
    return write_section(home, SECTION, requires, body)


def show(home) -> Autoreply | None:
    lines = read_section(home, SECTION)
    if not lines or not lines[0].startswith(_SETTINGS):
        return None
    try:
        return check(Autoreply(**json.loads(lines[0][len(_SETTINGS):])))
    except (ValueError, TypeError, AttributeError):
        raise InvalidInput("the autoreply section of the Sieve script was edited by hand and cannot be read; "
                           "run 'mailctl autoreply set' again or 'off'") from None


def turn_off(home) -> bool:
    """Remove the autoreply; False when there was none."""
    if read_section(home, SECTION) is None:
        return False
    write_section(home, SECTION, [], None)
    return True
