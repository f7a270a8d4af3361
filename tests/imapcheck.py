"""What an IMAP client may conclude from the responses it was given, checked exactly: the
model of the selected mailbox one stress client keeps (tests/imapstress.py), and the
registry of UIDs every client was handed. Pure: fed lines, it answers the violations, so
tests/test_imap_stress.py can feed it a transcript with a violation injected.

The rules (RFC 3501 unless said), each a kind of error:
  expunge-during-fetch   `* n EXPUNGE` while answering FETCH, STORE or SEARCH (7.4.1; the UID
                         forms may carry EXPUNGE)
  expunge-out-of-range   EXPUNGE of a number the client does not have
  exists-decreased       EXISTS below what the client knows (only EXPUNGE removes messages)
  fetch-out-of-range     FETCH of a number the client does not have
  uid-changed            a message number's UID is not the one the client was told
  uid-order              UIDs not strictly ascending with the message numbers (2.3.1.1)
  recent-over-exists     RECENT greater than EXISTS
  own-keyword            the client's private keyword (only it stores it, only with +FLAGS and
                         -FLAGS) is not as its last successful STORE left it
  search-own-keyword     SEARCH KEYWORD <own> disagrees with what the client stored
  search-out-of-range    SEARCH answered a number the client does not have
  uid-duplicate          APPENDUID / COPYUID handed out a UID already handed out (RFC 4315)
  uidnext-too-low        UIDNEXT not above a UID handed out before the command was sent
  uidvalidity-changed    another UIDVALIDITY for a mailbox nobody deleted or renamed
  flags-malformed        a FLAGS list with a flag twice or a system flag RFC 3501 does not define
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

_UNTAGGED_NUM = re.compile(r"^\* (\d+) (EXISTS|RECENT|EXPUNGE|FETCH)\b(.*)$", re.S)
_UID = re.compile(r"\bUID (\d+)")
_FLAGS = re.compile(r"\bFLAGS \(([^)]*)\)")
_UIDNEXT = re.compile(r"\[UIDNEXT (\d+)\]")
_UIDVALIDITY = re.compile(r"\[UIDVALIDITY (\d+)\]")
_COPYUID = re.compile(r"\[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\]")
_APPENDUID = re.compile(r"\[APPENDUID (\d+) ([\d:,]+)\]")
NO_EXPUNGE_DURING = {"FETCH", "STORE", "SEARCH"}
SYSTEM_FLAGS = {"\\answered", "\\flagged", "\\deleted", "\\seen", "\\draft", "\\recent"}


def uid_set(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        a, _, b = part.partition(":")
        lo, hi = int(a), int(b or a)
        out.extend(range(min(lo, hi), max(lo, hi) + 1))
    return out


@dataclass
class Violation:
    kind: str
    detail: str


class Registry:
    """The UIDs handed out per mailbox (APPENDUID, COPYUID), shared by every client."""

    def __init__(self):
        self.lock = threading.Lock()
        self.given: dict[tuple[str, int], set[int]] = {}
        self.validity: dict[str, int] = {}

    def record(self, mailbox: str, uidvalidity: int, uids: list[int]) -> list[Violation]:
        with self.lock:
            seen = self.given.setdefault((mailbox, uidvalidity), set())
            dup = [u for u in uids if u in seen]
            seen.update(uids)
        return [Violation("uid-duplicate", f"{mailbox} UID {u} handed out twice") for u in dup]

    def uidvalidity(self, mailbox: str, value: int) -> list[Violation]:
        """The first UIDVALIDITY seen for a mailbox is the one every later SELECT must give."""
        with self.lock:
            first = self.validity.setdefault(mailbox, value)
        return [] if first == value else [Violation("uidvalidity-changed", f"{mailbox}: {value}, was {first}")]

    def highest(self, mailbox: str) -> int:
        with self.lock:
            return max((max(s) for (m, _), s in self.given.items() if m == mailbox and s), default=0)


@dataclass
class Selected:
    """One client's view of its selected mailbox."""
    mailbox: str
    keyword: str                                   # this client's private keyword
    expected: dict[int, bool]                      # UID -> keyword set? (by this client's STOREs)
    uids: list = field(default_factory=list)       # message number - 1 -> UID or None (not told yet)
    recent: int = 0
    uidvalidity: int = 0
    uidnext: int = 0
    why: dict = field(default_factory=dict)        # UID -> the own STORE that set expected[UID]

    @property
    def exists(self) -> int:
        return len(self.uids)

    def uid_of(self, seq: int) -> int | None:
        return self.uids[seq - 1] if 1 <= seq <= self.exists else None

    def known(self) -> list[tuple[int, int]]:
        return [(i + 1, u) for i, u in enumerate(self.uids) if u is not None]

    # -- responses -------------------------------------------------------------------

    def untagged(self, line: str, command: str, floor_uid: int = 0) -> list[Violation]:
        """Apply one untagged line received while `command` (e.g. "FETCH", "UID FETCH",
        "IDLE") ran; floor_uid: the highest UID handed out before it was sent."""
        out: list[Violation] = []
        m = _UNTAGGED_NUM.match(line)
        if m:
            n, what, rest = int(m.group(1)), m.group(2), m.group(3)
            if what == "EXISTS":
                if n < self.exists:
                    out.append(Violation("exists-decreased", f"{line!r} after {self.exists} known, during {command}"))
                else:
                    self.uids.extend([None] * (n - self.exists))
            elif what == "RECENT":
                self.recent = n
                if n > self.exists:
                    out.append(Violation("recent-over-exists", f"{line!r} with {self.exists} EXISTS"))
            elif what == "EXPUNGE":
                if command in NO_EXPUNGE_DURING:
                    out.append(Violation("expunge-during-fetch", f"{line!r} while answering {command}"))
                if not 1 <= n <= self.exists:
                    out.append(Violation("expunge-out-of-range", f"{line!r} with {self.exists} messages"))
                else:
                    uid = self.uids.pop(n - 1)
                    if uid is not None:
                        self.expected.pop(uid, None)
            else:
                out += self.fetch(n, rest, line)
            return out
        if line.startswith("* SEARCH") and command.endswith("SEARCH"):
            return out        # the command's own check reads it
        m = _UIDNEXT.search(line)
        if m:
            self.uidnext = int(m.group(1))
            if self.uidnext <= floor_uid:
                out.append(Violation("uidnext-too-low", f"{line!r}: UID {floor_uid} was handed out before"))
        m = _UIDVALIDITY.search(line)
        if m:
            self.uidvalidity = int(m.group(1))
        return out

    def fetch(self, n: int, rest: str, line: str) -> list[Violation]:
        if not 1 <= n <= self.exists:
            return [Violation("fetch-out-of-range", f"{line[:120]!r} with {self.exists} messages")]
        out = []
        m = _UID.search(rest)
        uid = self.uids[n - 1]
        if m:
            told = int(m.group(1))
            if uid is not None and uid != told:
                out.append(Violation("uid-changed", f"{line[:120]!r}: message {n} was UID {uid}"))
            else:
                lower = [u for u in self.uids[:n - 1] if u is not None]
                higher = [u for u in self.uids[n:] if u is not None]
                if (lower and lower[-1] >= told) or (higher and higher[0] <= told):
                    out.append(Violation("uid-order", f"{line[:120]!r}: neighbours {lower[-1:]} {higher[:1]}"))
                else:
                    self.uids[n - 1] = uid = told
        f = _FLAGS.search(rest)
        if f:
            flags = f.group(1).lower().split()
            if len(set(flags)) != len(flags) or any(x.startswith("\\") and x not in SYSTEM_FLAGS for x in flags):
                out.append(Violation("flags-malformed", line[:160]))
        if f and uid is not None and uid in self.expected:
            has = self.keyword.lower() in f.group(1).lower().split()
            if has != self.expected[uid]:
                out.append(Violation("own-keyword", f"{line[:160]!r}: {self.keyword} should be "
                                     f"{'set' if self.expected[uid] else 'clear'} on UID {uid}"
                                     f" (after {self.why.get(uid, '?')})"))
        return out

    def search_result(self, line: str, asked_keyword: bool, expunge_issued: bool = False) -> list[Violation]:
        """`* SEARCH ...` of a non-UID SEARCH (KEYWORD <own> when asked_keyword).
        expunge_issued: the tagged reply said [EXPUNGEISSUED]; a message another session
        expunged, still numbered until a command may send its EXPUNGE (RFC 3501 §7.4.1),
        may then be left out (the RFC leaves it to the server), never added."""
        out = []
        numbers = [int(x) for x in line.split()[2:]]
        bad = [n for n in numbers if not 1 <= n <= self.exists]
        if bad:
            out.append(Violation("search-out-of-range", f"{line[:120]!r} with {self.exists} messages"))
        if asked_keyword:
            got = set(numbers)
            for seq, uid in self.known():
                if uid in self.expected and (seq in got) != self.expected[uid] \
                        and not (expunge_issued and self.expected[uid]):
                    out.append(Violation("search-own-keyword", f"{line[:120]!r}: message {seq} (UID {uid}) "
                                         f"should {'' if self.expected[uid] else 'not '}match"
                                         f" (after {self.why.get(uid, '?')})"))
                    break
        return out


def copyuid(line: str) -> tuple[int, list[int], list[int]] | None:
    m = _COPYUID.search(line)
    return (int(m.group(1)), uid_set(m.group(2)), uid_set(m.group(3))) if m else None


def appenduid(line: str) -> tuple[int, list[int]] | None:
    m = _APPENDUID.search(line)
    return (int(m.group(1)), uid_set(m.group(2))) if m else None
