"""A mailbox of varied messages for SORT and THREAD: encoded subjects, Re:/Fwd: chains,
list tags, missing and duplicate Message-IDs, broken and looping References, identical,
missing and unreadable dates, odd address fields. Deterministic for a seed, so our
server and Dovecot are compared on the same messages (tests/test_imap_sort_dovecot.py)
and the bench fills both servers alike.
"""
from __future__ import annotations

import base64
import random

BASES = ["Meeting on Monday", "budget 2024", "Café au lait", "Ärger im Büro", "lunch?",
         "release notes", "[bug 42] crash on start", "_underscore first", "a", "Zebra",
         "straße", "  spaced   out  ", "résumé", "Quarterly report", "hello world"]
NAMES = ["Alice", "bob", "Ålice Ångström", "Zed", "", "\"Doe, John\"", "=?UTF-8?Q?J=C3=B6rg?=", "mallory"]
HOSTS = ["example.org", "Example.COM", "b.example.net"]


def _encoded(text: str, rng: random.Random) -> str:
    data = text.encode()
    if rng.random() < 0.5:
        return "=?UTF-8?B?" + base64.b64encode(data).decode() + "?="
    q = "".join(chr(b) if 0x30 <= b < 0x7f and chr(b) not in "=?_" else
                "_" if b == 0x20 else f"={b:02X}" for b in data)
    return "=?utf-8?q?" + q + "?="


def subject_for(rng: random.Random, base: str) -> str | None:
    r = rng.random()
    if r < 0.04:
        return None
    if r < 0.07:
        return ""
    prefix = rng.choice(["", "", "", "Re: ", "RE: ", "re:", "Fwd: ", "Fw: ", "Re: Re: ", "[list] Re: ",
                         "Re [2]: ", "[list] ", "FWD:", "Re:\t", " Re: [x] "])
    suffix = rng.choice(["", "", "", " (fwd)", "  ", " (FWD) (fwd)"])
    text = prefix + base + suffix
    if rng.random() < 0.1:
        text = "[Fwd: " + text + "]"
    if rng.random() < 0.25:
        text = _encoded(text, rng)
    elif rng.random() < 0.1:
        cut = len(prefix)
        text = prefix + _encoded(base, rng) + " " + _encoded(suffix or "x", rng) if cut else text
    return text


def date_for(rng: random.Random, i: int) -> str | None:
    r = rng.random()
    if r < 0.05:
        return None
    if r < 0.08:
        return "not a date"
    if r < 0.2:
        return "Mon, 02 Jan 2023 10:00:00 +0000"           # many identical
    day = 1 + rng.randrange(28)
    hour = rng.randrange(24)
    zone = rng.choice(["+0000", "-0500", "+0200", "+1400", "GMT", "-0000"])
    mon = rng.choice(["Jan", "Feb", "Mar", "Apr", "Oct", "Dec"])
    return f"{day} {mon} 20{rng.randrange(18, 25)} {hour:02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} {zone}"


def address_for(rng: random.Random) -> str | None:
    r = rng.random()
    if r < 0.05:
        return None
    if r < 0.08:
        return "undisclosed-recipients:;"
    name = rng.choice(NAMES)
    local = rng.choice(["alice", "Bob", "carol", "zed", "_x", "mary.jane", "a"])
    addr = f"{local}@{rng.choice(HOSTS)}"
    if not name:
        return addr if rng.random() < 0.7 else f"<{addr}>"
    if rng.random() < 0.2:
        return f"{addr} ({name.strip(chr(34))})"
    return f"{name} <{addr}>" + (f", other <o@{HOSTS[0]}>" if rng.random() < 0.2 else "")


def messages(count: int, seed: int = 5256) -> list[tuple[bytes, str]]:
    """[(message in CRLF, APPEND date-time)]."""
    rng = random.Random(seed)
    out = []
    ids: list[str] = []
    for i in range(count):
        lines = []
        base = rng.choice(BASES)
        # replies: References to earlier messages (sometimes truncated, unknown or looping)
        refs: list[str] = []
        if ids and rng.random() < 0.5:
            parent = rng.randrange(len(ids))
            chain = ids[max(0, parent - rng.randrange(4)):parent + 1]
            refs = [x for x in chain if x]
            if rng.random() < 0.1:
                refs.insert(0, f"<gone{rng.randrange(20)}@nowhere>")
            if rng.random() < 0.05 and i + 1 < count:
                refs.append(f"<m{i + 1}@corpus>")        # a loop with the next message
        msgid = f"<m{i}@corpus>"
        r = rng.random()
        if r < 0.06:
            msgid = None
        elif r < 0.09 and ids:
            msgid = rng.choice([x for x in ids if x] or [msgid])   # a duplicate
        elif r < 0.11:
            msgid = "no-brackets@corpus"
        ids.append(msgid if msgid and msgid.startswith("<") else "")
        frm, to, cc = address_for(rng), address_for(rng), address_for(rng) if rng.random() < 0.3 else None
        for name, value in (("From", frm), ("To", to), ("Cc", cc), ("Subject", subject_for(rng, base)),
                            ("Date", date_for(rng, i)), ("Message-ID", msgid)):
            if value is not None:
                lines.append(f"{name}: {value}")
        if refs:
            if rng.random() < 0.2:
                lines.append(f"In-Reply-To: {refs[-1]}")
            else:
                lines.append("References: " + "\r\n\t".join(" ".join(refs[j:j + 2]) for j in range(0, len(refs), 2)))
        body = "body " * rng.randrange(1, 60)
        msg = ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()
        when = rng.choice(["01-Mar-2024 10:00:00 +0000", "01-Mar-2024 10:00:00 +0000",
                           f"{1 + rng.randrange(28):02d}-Feb-2024 {rng.randrange(24):02d}:00:00 +0000"])
        out.append((msg, when))
    return out
