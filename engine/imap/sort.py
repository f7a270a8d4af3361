"""SORT (RFC 5256 §3, RFC 5957's DISPLAYFROM/DISPLAYTO): the sort criteria and the
keys they compare, taken from the folder's header index (index.py) and kept per process
by message file name, which never changes for a message: a second SORT of a large
folder parses nothing.

Where RFC 5256 leaves a choice it is Dovecot's: ties go to the next key and at the end
to the sequence number (ascending even under REVERSE); DATE is the Date field in UTC,
else the INTERNALDATE; strings compare in decomposed titlecase (basesubject.py);
FROM/TO/CC compare the first address's mailbox, DISPLAYFROM/DISPLAYTO its decoded
display name, else mailbox@host.
"""
from __future__ import annotations

import calendar
import email.utils
import re
import threading
from collections import OrderedDict

from . import index as indexmod
from .addrlist import address_list
from .basesubject import base_subject, casemapped, decode_words
from .parser import Atom, ParseError
from .thread import ThreadMsg, message_ids

KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})
MAX_KEYS = 16          # sort keys in one command: more is hostile, not useful
MAX_FOLDERS = 16       # folders whose keys one process keeps
MAX_ORDERS_KEPT = 8    # sort results one process keeps (see sort_order)


def parse_criteria(token) -> list[tuple[str, bool]]:
    """A sort criteria list -> [(key, reverse)]. Raises ParseError."""
    if not isinstance(token, list) or not token:
        raise ParseError("SORT needs a parenthesised list of sort keys")
    if len(token) > 2 * MAX_KEYS:
        raise ParseError(f"too many sort keys (at most {MAX_KEYS})")
    out: list[tuple[str, bool]] = []
    reverse = False
    for t in token:
        if not isinstance(t, Atom):
            raise ParseError("a sort key must be an atom")
        key = t.upper()
        if key == "REVERSE":
            if reverse:
                raise ParseError("REVERSE REVERSE")
            reverse = True
            continue
        if key not in KEYS:
            raise ParseError(f"unknown sort key {str(t)[:30]}")
        out.append((key, reverse))
        reverse = False
    if reverse:
        raise ParseError("REVERSE needs a sort key after it")
    return out


def sort_order(folder, msgs: list, criteria: list[tuple[str, bool]]) -> list[int]:
    """Positions in msgs (store.Message, in sequence order) in the sorted order."""
    # The same messages sort alike: webmail sorts the folder again at every page.
    key = (str(folder.path), tuple(criteria), tuple(m.base for m in msgs))
    order = _ORDERS.get(key)
    if order is not None:
        return order
    order = list(range(len(msgs)))
    for name, reverse in reversed(criteria):
        col = column(folder, msgs, name)
        order.sort(key=col.__getitem__, reverse=reverse)   # stable, also reversed
    with _CACHE_LOCK:
        while len(_ORDERS) >= MAX_ORDERS_KEPT:
            _ORDERS.pop(next(iter(_ORDERS)))
        _ORDERS[key] = order
    return order


def column(folder, msgs: list, key: str) -> list:
    """The values of one sort key, aligned with msgs."""
    if key in ("ARRIVAL", "SIZE"):     # a stat() or a read each: kept, they never change
        known = _known(folder, key, len(msgs))
        out = []
        for m in msgs:
            value = known.get(m.base)
            if value is None:
                value = known[m.base] = m.mtime if key == "ARRIVAL" else m.vsize
            out.append(value)
        return out
    values = _header_values(folder, msgs, key)
    if key == "DATE":
        return [v if v is not None else m.mtime for v, m in zip(values, msgs)]
    return values


def thread_messages(folder, msgs: list, numbers: list[int]) -> list[ThreadMsg]:
    """What THREAD needs of each message (numbers: what the reply calls each)."""
    infos = _header_values(folder, msgs, "THREAD")
    out = []
    for m, n, info in zip(msgs, numbers, infos):
        msgid, refs, subject, date = info or (None, [], None, None)
        out.append(ThreadMsg(n, m.uid, msgid, refs, subject, date if date is not None else m.mtime))
    return out


# -- the keys of one message, from its index entry ------------------------------------

_FIRST: dict[str, re.Pattern] = {}
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def first_value(entry: indexmod.Entry, name: str) -> bytes | None:
    """The value of the first field called name (lower-case), unfolded and stripped."""
    if not entry.plain:
        return entry.part().header(name)
    pattern = _FIRST.get(name)
    if pattern is None:
        pattern = _FIRST[name] = re.compile(
            rb"^" + re.escape(name.encode("ascii")) + rb"[ \t]*:([^\n]*\n(?:[ \t][^\n]*\n)*)",
            re.IGNORECASE | re.MULTILINE)
    m = pattern.search(entry.fields)
    return _FOLD.sub(b"", m.group(1)).strip() if m else None


def sent_time(value: bytes | None) -> float | None:
    """The Date field as seconds since the epoch (UTC), None when absent or unreadable."""
    if not value:
        return None
    try:
        t = email.utils.parsedate_tz(value.decode("ascii", "replace"))
        if t is None:
            return None
        when = calendar.timegm(t[:6]) - (t[9] or 0)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return when if when > 0 else None


def _first_address(value: bytes | None):
    if not value:
        return None
    for name, _route, mailbox, host in address_list(value):
        if mailbox is None and host is None:
            continue
        return name, mailbox, host
    return None


def mailbox_key(value: bytes | None) -> str:
    addr = _first_address(value)
    if addr is None or addr[1] is None:
        return ""
    return casemapped(decode_words(addr[1].decode("utf-8", "replace")))


def display_key(value: bytes | None) -> str:
    """RFC 5957: the display name, else mailbox@host, else the mailbox."""
    addr = _first_address(value)
    if addr is None:
        return ""
    name, mailbox, host = addr
    if name:
        text = decode_words(name.decode("utf-8", "replace"))
        if text:
            return casemapped(text)
    if mailbox is None:
        return ""
    text = mailbox.decode("utf-8", "replace") + ("@" + host.decode("utf-8", "replace") if host else "")
    return casemapped(decode_words(text))


def _thread_info(entry):
    ids = message_ids(first_value(entry, "message-id"))
    refs = message_ids(first_value(entry, "references"))
    if not refs:
        refs = message_ids(first_value(entry, "in-reply-to"))[:1]
    return (ids[0] if ids else None, refs, first_value(entry, "subject"),
            sent_time(first_value(entry, "date")))


_MAKERS = {
    "SUBJECT": lambda e: base_subject(first_value(e, "subject"))[0],
    "DATE": lambda e: sent_time(first_value(e, "date")),
    "FROM": lambda e: mailbox_key(first_value(e, "from")),
    "TO": lambda e: mailbox_key(first_value(e, "to")),
    "CC": lambda e: mailbox_key(first_value(e, "cc")),
    "DISPLAYFROM": lambda e: display_key(first_value(e, "from")),
    "DISPLAYTO": lambda e: display_key(first_value(e, "to")),
    "THREAD": _thread_info,
}
_EMPTY = {"SUBJECT": "", "FROM": "", "TO": "", "CC": "", "DISPLAYFROM": "", "DISPLAYTO": ""}

# folder path -> {key: {message base name: value}}; a message's file name (base) never
# changes while it exists, nor do its header, INTERNALDATE or size
_CACHE: OrderedDict[str, dict[str, dict[str, object]]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_ORDERS: dict[tuple, list[int]] = {}


def _known(folder, key: str, wanted: int = 0) -> dict[str, object]:
    """The values of one key this process knows for a folder's messages, by base name;
    started afresh when mostly about messages no longer there."""
    path = str(folder.path)
    with _CACHE_LOCK:
        per_folder = _CACHE.get(path)
        if per_folder is None:
            per_folder = _CACHE[path] = {}
            while len(_CACHE) > MAX_FOLDERS:
                _CACHE.popitem(last=False)
        _CACHE.move_to_end(path)
        known = per_folder.setdefault(key, {})
        if wanted and len(known) > 2 * wanted + 1000:
            known = per_folder[key] = {}
        return known


def _header_values(folder, msgs: list, key: str) -> list:
    known = _known(folder, key, len(msgs))
    missing = [m for m in msgs if m.base not in known]
    if missing:
        entries = indexmod.lookup(folder, missing)
        make = _MAKERS[key]
        for m in missing:
            entry = entries.get(m.base)
            if entry is not None:        # else gone meanwhile: its key stays unknown
                known[m.base] = make(entry)
    empty = _EMPTY.get(key)
    return [known.get(m.base, empty) for m in msgs]
