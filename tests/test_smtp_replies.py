"""The SMTP reply table (engine/smtp/replies.py): every reply well formed, and no reply
text written anywhere else."""
from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import pytest

from engine.smtp import replies
from engine.smtp.replies import Rejection, Reply

ENGINE = Path(__file__).resolve().parent.parent / "engine"
REPLY_LINE = re.compile(r"^(\d{3}) (?:([245])\.\d{1,3}\.\d{1,3} )?\S")
# a reply literal: a quote, a 3-digit code, an enhanced status code ("550 5.", f"421 4.)
LITERAL = re.compile(r"""["'][2-5]\d\d[ -][245]\.\d""")
# the modules that answer SMTP clients or decide what they are told
SCANNED = ["smtp", "accept", "directory.py", "delivery.py", "diskspace.py"]

CALLED = {       # the replies that carry a value, with sample values
    "attachment_blocked": ("invoice.pdf.exe",),
    "timeout": ("mx.example.com",),
    "hello": ("mx.example.com",),
    "challenge": ("Username:",),
    "too_big": (20 * 1024 * 1024, 10 * 1024 * 1024),
    "queued": ("17a2b3c4",),
    "sieve_rejected": ("not wanted here",),
    "spf_refused": ("example.net", "192.0.2.1 is not allowed"),
    "dmarc_refused": ("example.net",),
    "dmarc_temperror": ("example.net",),
    "virus_found": ("Eicar-Test-Signature",),
    "spam_tagged": ("SpamAssassin",),
    "spam_refused": (8.0, 5.0),
    "client_check_refused": ("client 192.0.2.1 has no reverse DNS (PTR)",),
    "sender_domain_refused": ("example.net", True),
    "send_limit": ("alice@example.com", "sending limit of 100 messages per hour"),
    "send_blocked": ("alice@example.com", "sending limit of 500 messages per day"),
}


def table() -> dict[str, str]:
    """Every reply of the module: its constants, and its functions called."""
    out = {name: value for name, value in vars(replies).items()
           if isinstance(value, str) and REPLY_LINE.match(value) and name != "UNKNOWN_MAILBOX"}   # a prefix
    for name, args in CALLED.items():
        out[f"{name}()"] = getattr(replies, name)(*args)
    out["ehlo()"] = replies.ehlo(["mx.example.com", "PIPELINING", "SIZE 10485760"])
    return out


def test_the_table_holds_every_kind_of_reply():
    names = set(table())
    assert len(names) > 60
    assert {"OK", "UNKNOWN_USER", "RELAY_DENIED", "INSUFFICIENT_STORAGE", "timeout()", "queued()"} <= names
    for name, value in vars(replies).items():       # a new function needs a sample here
        if callable(value) and getattr(value, "__module__", "") == replies.__name__ \
                and not isinstance(value, type):
            assert name in CALLED or name == "ehlo", name


@pytest.mark.parametrize("name", sorted(table()))
def test_every_reply_has_a_code_and_a_matching_enhanced_status(name):
    value = table()[name]
    for line in value.split("\r\n"):
        m = REPLY_LINE.match(line.replace("250-", "250 ", 1))
        assert m, (name, line)
        code, cls = m.groups()
        if cls is not None:
            assert cls == code[0], (name, line)      # RFC 3463: 2.x.x with 2xx, and so on
    if isinstance(value, Reply):
        assert str(value) == f"{value.code} {value.status} {value.text}"
        assert value.status[0] == str(value.code)[0], name
        assert isinstance(value, Rejection) == (value.code >= 400), name   # refusals are Rejections


def test_texts_kept_byte_for_byte():
    assert replies.UNKNOWN_USER == "550 5.1.1 Unknown User"
    assert replies.ROUTE_REFUSED == "550 5.1.1 Reciprient Not In Route List"
    assert replies.too_big(20 * 1024 * 1024, 10 * 1024 * 1024) == \
        "552 5.3.4 Message Size Exceeds Fixed Maximum Message Size. Size: 20480 KB, Max size: 10240 KB"
    assert replies.timeout("mx") == "421 4.4.2 mx Error: timeout exceeded"
    assert replies.queued("ab") == "250 2.0.0 Ok: queued as ab"
    assert replies.challenge("Username:") == "334 VXNlcm5hbWU6"
    assert replies.ehlo(["mx", "PIPELINING"]) == "250-mx\r\n250 PIPELINING"


def test_a_reply_survives_copy_and_pickle():
    for reply in (replies.UNKNOWN_USER, replies.OK):
        for again in (copy.copy(reply), copy.deepcopy(reply), pickle.loads(pickle.dumps(reply))):
            assert again == reply and type(again) is type(reply)
            assert (again.code, again.status, again.text) == (reply.code, reply.status, reply.text)


def literals_outside_the_table(root: Path) -> list[str]:
    found = []
    for entry in SCANNED:
        path = root / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
        for file in files:
            if file.name == "replies.py" and file.parent.name == "smtp":
                continue
            for number, line in enumerate(file.read_text().splitlines(), 1):
                if LITERAL.search(line):
                    found.append(f"{file.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_no_smtp_reply_literal_outside_the_table():
    assert literals_outside_the_table(ENGINE) == []


def test_the_literal_check_finds_one_put_back(tmp_path):
    """The check above would see a reply written outside the table again."""
    (tmp_path / "smtp").mkdir()
    (tmp_path / "smtp" / "replies.py").write_text('OK = "250 2.0.0 Ok"\n')
    (tmp_path / "smtp" / "server.py").write_text('        return "550 5.7.1 Not Yours"\n')
    (tmp_path / "directory.py").write_text("X = f'421 4.4.2 {host} Error'\n")
    assert [f.split(":")[0] for f in literals_outside_the_table(tmp_path)] == ["smtp/server.py", "directory.py"]
