"""Raw IMAP sessions for the CONDSTORE and QRESYNC tests (RFC 7162): commands that
must succeed, and the mod-sequences and UID sets read from their responses."""
from __future__ import annotations

import re

from helpers_raw import Raw


def session(port: int, address: str, select: str | None = "SELECT INBOX (CONDSTORE)",
            enable: str | None = None) -> tuple[Raw, list[bytes]]:
    """A logged-in raw session (ENABLE first when given), and its SELECT's responses."""
    r = Raw(port)
    r.login(address)
    if enable:
        ok(r, f"ENABLE {enable}", b"e1")
    lines = ok(r, select, b"s1") if select else []
    return r, lines


def ok(r: Raw, command: str, tag: bytes = b"c1") -> list[bytes]:
    """The command's responses, its tagged OK last (asserted). \\Recent is left out of
    flag lists: messages delivered for a test are recent to its first session, which is
    not what these tests look at."""
    r.send(tag + b" " + command.encode() + b"\r\n")
    lines = r.until_tag(tag)
    assert lines[-1].startswith(tag + b" OK"), lines
    return [line.replace(b" \\Recent", b"").replace(b"(\\Recent)", b"()") for line in lines]


def highest(lines: list[bytes]) -> int:
    """The last [HIGHESTMODSEQ n] in lines."""
    found = [int(m[1]) for line in lines if (m := re.search(rb"\[HIGHESTMODSEQ (\d+)\]", line))]
    assert found, lines
    return found[-1]


def uidvalidity(lines: list[bytes]) -> int:
    return int(next(m[1] for line in lines if (m := re.search(rb"\[UIDVALIDITY (\d+)\]", line))))


def modseqs(lines: list[bytes]) -> dict[int, int]:
    """{uid: modseq} of the untagged FETCH lines."""
    out = {}
    for line in lines:
        u, m = re.search(rb"UID (\d+)", line), re.search(rb"MODSEQ \((\d+)\)", line)
        if line.startswith(b"* ") and b" FETCH " in line and u and m:
            out[int(u[1])] = int(m[1])
    return out


def fetched_flags(lines: list[bytes]) -> dict[int, set[str]]:
    """{uid: flags} of the untagged FETCH lines that hold both."""
    out = {}
    for line in lines:
        m = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)
        if line.startswith(b"* ") and m:
            out[int(m[1])] = set(m[2].decode().split())
    return out


def vanished(lines: list[bytes], earlier: bool = True) -> list[int]:
    """The UIDs of the VANISHED (EARLIER) lines (VANISHED alone when earlier is False)."""
    head = b"* VANISHED (EARLIER) " if earlier else b"* VANISHED "
    uids: list[int] = []
    for line in lines:
        if line.startswith(head) and (earlier or b"(EARLIER)" not in line):
            for part in line[len(head):].decode().split(","):
                a, _, b = part.partition(":")
                uids += range(int(a), int(b or a) + 1)
    return sorted(uids)
