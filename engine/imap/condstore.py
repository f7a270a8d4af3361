"""CONDSTORE and QRESYNC (RFC 7162) as the commands use them: their parameters and
modifiers parsed, enabling them for a session, the VANISHED (EARLIER) and FETCH lines
a QRESYNC SELECT or a UID FETCH (CHANGEDSINCE n VANISHED) answers with, and UID sets
written compactly. The mod-sequences themselves are kept by the store
(maildir/modseq.py, one mailctl-modseq file per folder, shared by every process).
"""
from __future__ import annotations

from typing import NamedTuple

from .errors import bad
from .parser import Atom, SequenceMatcher, as_atom, parse_sequence_set

MAX_MODSEQ = 2 ** 63 - 1       # mod-sequence-value (RFC 7162 §7)
UIDS_EXPANDED = 1_000_000      # a "not present" UID range larger than this is cut (a lost log)


class QResync(NamedTuple):
    """SELECT's (QRESYNC (uidvalidity modseq [known-uids [seq-match-data]]))."""
    uidvalidity: int
    modseq: int
    known: list | None          # ranges of known-uids (parse_sequence_set), None: not given


def uid_set(uids) -> str:
    """A compact UID set of sorted UIDs: 1:3,7,9:10."""
    parts = []
    start = prev = None
    for u in uids:
        if start is None:
            start = prev = u
        elif u == prev + 1:
            prev = u
        else:
            parts.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = u
    if start is not None:
        parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


def modseq_number(token, what: str) -> int:
    text = as_atom(token, what)
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_MODSEQ:
        raise bad(f"{what} must be a mod-sequence (a number below 2^63)")
    return int(text)


def _number(token, what: str) -> int:
    text = as_atom(token, what)
    if not text.isascii() or not text.isdigit() or len(text) > 10 or not 0 < int(text) <= 0xFFFFFFFF:
        raise bad(f"{what} must be a non-zero number")
    return int(text)


def parse_select_params(tokens: list, enabled: set[str]) -> tuple[bool, QResync | None]:
    """SELECT/EXAMINE's optional parameter list: (CONDSTORE), (QRESYNC (...)).
    Returns (condstore asked for, the QRESYNC parameter or None)."""
    if not tokens:
        return False, None
    if len(tokens) != 1 or not isinstance(tokens[0], list):
        raise bad("SELECT takes a mailbox name and an optional parameter list")
    params = tokens[0]
    condstore, qresync = False, None
    i = 0
    while i < len(params):
        name = as_atom(params[i], "SELECT parameter").upper()
        if name == "CONDSTORE":
            condstore = True
        elif name == "QRESYNC":
            if "QRESYNC" not in enabled:
                raise bad("QRESYNC must be enabled first (ENABLE QRESYNC)")
            if i + 1 >= len(params) or not isinstance(params[i + 1], list):
                raise bad("QRESYNC needs (uidvalidity modseq [known-uids])")
            args = params[i + 1]
            i += 1
            if not 2 <= len(args) <= 4 or any(isinstance(a, list) for a in args[:3]):
                raise bad("QRESYNC needs (uidvalidity modseq [known-uids [seq-match-data]])")
            known = None
            if len(args) >= 3:
                known = parse_sequence_set(as_atom(args[2], "known UIDs"))
            qresync = QResync(_number(args[0], "UIDVALIDITY"), modseq_number(args[1], "mod-sequence"), known)
        else:
            raise bad(f"Unknown SELECT parameter {name[:20]}")
        i += 1
    return condstore or qresync is not None, qresync


def parse_fetch_modifiers(token, uid: bool, enabled: set[str]) -> tuple[int | None, bool]:
    """FETCH's modifier list: (CHANGEDSINCE n [VANISHED]); returns (n or None, VANISHED)."""
    if not isinstance(token, list):
        raise bad("FETCH modifiers must be a parenthesised list")
    changedsince, vanished = None, False
    i = 0
    while i < len(token):
        name = as_atom(token[i], "FETCH modifier").upper()
        if name == "CHANGEDSINCE" and i + 1 < len(token):
            changedsince = modseq_number(token[i + 1], "CHANGEDSINCE")
            i += 1
        elif name == "VANISHED":
            vanished = True
        else:
            raise bad(f"Unknown FETCH modifier {name[:20]}")
        i += 1
    if vanished and (not uid or "QRESYNC" not in enabled or changedsince is None):
        raise bad("VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC")
    return changedsince, vanished


def parse_store_modifiers(token) -> int:
    """STORE's modifier list: (UNCHANGEDSINCE n); returns n."""
    if not isinstance(token, list) or len(token) != 2 or not isinstance(token[0], Atom) \
            or token[0].upper() != "UNCHANGEDSINCE":
        raise bad("STORE modifiers: (UNCHANGEDSINCE mod-sequence)")
    return modseq_number(token[1], "UNCHANGEDSINCE")


async def enable(session) -> None:
    """A CONDSTORE enabling command (RFC 7162 §3.1): from now on this session reports
    mod-sequences, and the selected folder's are looked up now."""
    session.enabled.add("CONDSTORE")
    sel = session.selected
    if sel is not None:
        sel.qresync = "QRESYNC" in session.enabled
        if not sel.condstore:
            await session.blocking(sel.start_modseqs)


def vanished_earlier(sel, since: int, ranges: list | None) -> bytes:
    """(worker thread) "* VANISHED (EARLIER) ..." for the UIDs in ranges (None: all)
    expunged after mod-sequence since; b"" when none. When the folder's expunge log no
    longer reaches back that far, every UID of ranges not in the folder (RFC 7162 §3.2.5.2
    allows more than the expunged ones)."""
    with sel.folder.modseqs() as ms:
        gone = ms.vanished_since(since)
    top = max(sel.folder.uidnext() - 1, sel.uids[-1] if sel.uids else 0)
    matcher = SequenceMatcher(ranges if ranges is not None else [(1, None)], top)
    present = set(sel.uids)
    if gone.complete:
        uids = [u for u in gone.uids if u in matcher and u not in present]
    else:
        uids = []
        for a, b in matcher.ranges:
            b = min(b, top)
            if b - a > UIDS_EXPANDED:
                a = b - UIDS_EXPANDED
            uids += [u for u in range(max(a, 1), b + 1) if u not in present]
        uids = sorted(set(uids))
    return b"* VANISHED (EARLIER) %s\r\n" % uid_set(uids).encode() if uids else b""


def changed_lines(sel, since: int, flag_text) -> list[bytes]:
    """FETCH (UID FLAGS MODSEQ) of every message with a mod-sequence above since
    (a QRESYNC SELECT). flag_text(view flags) gives the encoded flag list."""
    out = []
    for seq, m in enumerate(sel.msgs, 1):
        n = sel.modseq_of(m.uid)
        if n > since and not sel.is_ghost(m):
            out.append(b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n"
                       % (seq, m.uid, flag_text(m).encode(), n))
    return out
